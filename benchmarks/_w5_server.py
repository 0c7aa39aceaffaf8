"""W5's server, run as a child process: ``runtime.asgi.create_app`` over a Runtime with a
MemoryStore, served by uvicorn on 127.0.0.1 (a free port, printed as ``port N`` on
stdout once listening).

The agent waits until the file named by the turn's user message exists (the client
creates it once every subscriber is connected), then emits ``--events`` tokens in
bursts of ``--burst`` every ``--interval`` seconds.

``python -m benchmarks._w5_server --events E --burst B --interval S``
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

import anyio

_params: dict[str, Any] = {}


async def _agent(turn: Any) -> None:
    go = anyio.Path(turn.user_message)
    while not await go.exists():  # noqa: ASYNC110 - the signal comes from another process
        await anyio.sleep(0.01)
    events, burst, interval = _params["events"], _params["burst"], _params["interval"]
    sent = 0
    while sent < events:
        for _ in range(min(burst, events - sent)):
            sent += 1
            await turn.token(f"t{sent} ")
        if sent < events:
            await anyio.sleep(interval)


async def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from runtime import MemoryStore, Runtime
    from runtime.asgi import create_app

    _params.update(events=args.events, burst=args.burst, interval=args.interval)
    rt = Runtime(MemoryStore(), _agent, max_events=max(100_000, 2 * args.events))
    app = create_app(rt, api_token=None, heartbeat=15.0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", backlog=4096, timeout_keep_alive=30
    )
    server = uvicorn.Server(config)
    sys.stdout.write(f"port {sock.getsockname()[1]}\n")
    sys.stdout.flush()
    await server.serve(sockets=[sock])


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks._w5_server")
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--burst", type=int, required=True)
    p.add_argument("--interval", type=float, required=True)
    anyio.run(_serve, p.parse_args())


if __name__ == "__main__":
    main()
