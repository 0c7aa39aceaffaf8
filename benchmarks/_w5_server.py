"""W5's server, run as a child process: ``runtime.asgi.create_app`` over a Runtime with a
MemoryStore, served by uvicorn on 127.0.0.1 (a free port, printed as ``port N`` on
stdout once listening).

The agent waits until the file named by the turn's user message exists (the client
creates it once every subscriber is connected), then emits ``--events`` tokens in
bursts of ``--burst`` every ``--interval`` seconds. When the client creates
``<that file>.stop`` (every subscriber has the whole stream), the server prints
``stats <json>`` and exits: the CPU seconds this process used from the first token to
then, the cyclic garbage collector's share of it, and how far the agent's bursts fell
behind their schedule (a loop too busy to wake the agent on time).

``python -m benchmarks._w5_server --events E --burst B --interval S [--gc-threshold N]
[--event-log URL --event-log-prefix P --stop-file PATH]``

With ``--event-log`` the runtime's broker is a ``RedisEventLog`` (WREDIS runs two of
these servers: one runs the turn, the other only serves its stream from Redis, and stops
when ``--stop-file`` exists).

``--gc-threshold N`` calls ``gc.set_threshold(N)`` before the first token (a tuning a
deployment may choose; ``python -m benchmarks`` never passes it): the probe that shows
what the cyclic collector costs this workload (docs/benchmarks.md, W5).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import sys
import time
from collections import Counter
from typing import Any

import anyio

from ._gcwatch import GcWatch

_params: dict[str, Any] = {}
_stats: dict[str, Any] = {}
_watch = GcWatch()


async def _agent(turn: Any) -> None:
    _params["go"] = turn.user_message
    go = anyio.Path(turn.user_message)
    # GC-tracked objects before the subscribers connect and once all of them are: what
    # the collector walks per SSE connection (docs/benchmarks.md, W5)
    objects0 = len(gc.get_objects())
    while not await go.exists():  # noqa: ASYNC110 - the signal comes from another process
        await anyio.sleep(0.01)
    _stats["gc_objects_before"] = objects0
    _stats["gc_objects_connected"] = len(gc.get_objects())
    events, burst, interval = _params["events"], _params["burst"], _params["interval"]
    if _params["gc_threshold"] is not None:
        gc.set_threshold(_params["gc_threshold"])
    _stats["gc_threshold"] = gc.get_threshold()
    _stats["cpu0"] = time.process_time()
    _watch.__enter__()
    t0 = time.perf_counter()
    late: list[float] = []  # seconds each burst started after its nominal time
    sent = 0
    while sent < events:
        if len(late) in (_PROBE_BURST, _PROBE_BURST + 1):
            # let every subscriber finish the previous burst and wait again; the pause
            # moves the schedule, so no burst after it counts as late
            paused = time.perf_counter()
            await anyio.sleep(0.5)
            _burst_objects(len(late) == _PROBE_BURST)
            t0 += time.perf_counter() - paused
        late.append(time.perf_counter() - t0 - len(late) * interval)
        for _ in range(min(burst, events - sent)):
            sent += 1
            await turn.token(f"t{sent} ")
        if sent < events:
            # Sleep to the next burst's nominal time: a slow wake-up is not compounded.
            await anyio.sleep(max(0.0, t0 + len(late) * interval - time.perf_counter()))
    late.sort()
    _stats["burst_late_p50_ms"] = round(late[len(late) // 2] * 1000, 1)
    _stats["burst_late_max_ms"] = round(late[-1] * 1000, 1)


#: the burst before which, and before the next, the heap is snapshotted
_PROBE_BURST = 10


def _burst_objects(first: bool) -> None:
    """What one burst leaves behind: GC-tracked objects alive just before burst
    :data:`_PROBE_BURST` + 1 (every subscriber waiting for it) that were not alive just
    before burst :data:`_PROBE_BURST`. A subscriber that keeps up holds these across its
    wait, so young collections walk them and middle ones promote them (docs/benchmarks.md,
    W5); ``burst_new_objects`` is their count, ``burst_new_types`` the commonest types."""
    objects = gc.get_objects()
    if first:
        # the objects themselves are kept until the second snapshot, so that no new
        # object can reuse the address (the id) of one that died meanwhile
        _params["probe_objects"] = objects
        return
    old = _params.pop("probe_objects", None)
    if old is None:
        return
    seen = {id(o) for o in old}
    del old
    new = [o for o in objects if id(o) not in seen]
    _stats["burst_new_objects"] = len(new)
    _stats["burst_new_types"] = dict(Counter(type(o).__qualname__ for o in new).most_common(12))


async def _follower_burst_objects(stream_id: str) -> None:
    """:func:`_burst_objects` on a node that only serves the stream (it has no agent to
    tell it where the bursts are): the stream's log here stops growing for the agent's
    pause before burst :data:`_PROBE_BURST` and again before the next one; each snapshot
    is taken once the log has not grown for :data:`_QUIET` seconds (every subscriber
    here has sent the burst and waits for the next)."""
    log = await _params["rt"].broker.attach(stream_id)
    start = log.last_seq  # the events before the first token (the agent starts at go)
    for first in (True, False):
        seen, since = log.last_seq, time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            if log.last_seq != seen:
                seen, since = log.last_seq, time.perf_counter()
            elif seen > start and time.perf_counter() - since >= _QUIET:
                break
        _burst_objects(first)
        while log.last_seq == seen:  # noqa: ASYNC110 - the pause ends (polled: a probe)
            await asyncio.sleep(0.01)


#: seconds without a new event that mark the agent's pause (it pauses 0.5 s; bursts
#: come every --interval, 0.1 s)
_QUIET = 0.3


async def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from runtime import MemoryStore, Runtime
    from runtime.asgi import create_app

    _params.update(
        events=args.events, burst=args.burst, interval=args.interval, gc_threshold=args.gc_threshold
    )
    broker = None
    if args.event_log:
        from runtime.brokers.redis import RedisEventLog

        broker = RedisEventLog(
            args.event_log, prefix=args.event_log_prefix, max_events=max(100_000, 2 * args.events)
        )
    if args.stop_file:
        _params["go"] = args.stop_file.removesuffix(".stop")
        _params["serve_only"] = True
    rt = Runtime(MemoryStore(), _agent, max_events=max(100_000, 2 * args.events), broker=broker)
    _params["rt"] = rt
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
    async with anyio.create_task_group() as tg:
        tg.start_soon(_report_on_stop, server)
        await server.serve(sockets=[sock])
        tg.cancel_scope.cancel()


async def _stop_requested() -> bool:
    return "go" in _params and await anyio.Path(_params["go"] + ".stop").exists()


async def _report_on_stop(server: Any) -> None:
    """Print the stats and stop the server once the client asks for it. A node that
    runs no turn (``--stop-file``) counts its CPU from the client's go signal, as the
    node running the agent does from its first token."""
    probe = None
    if _params.get("serve_only"):
        while not await anyio.Path(_params["go"]).exists():  # noqa: ASYNC110 - another process
            await anyio.sleep(0.01)
        _stats["cpu0"] = time.process_time()
        _watch.__enter__()
        stream = anyio.Path(_params["go"] + ".stream")
        if await stream.exists():
            probe = asyncio.get_running_loop().create_task(
                _follower_burst_objects((await stream.read_text()).strip())
            )
    while not await _stop_requested():  # noqa: ASYNC110 - the client is another process
        await anyio.sleep(0.05)
    if probe is not None:
        probe.cancel()
    if "cpu0" in _stats:
        _stats["cpu_s"] = round(time.process_time() - _stats.pop("cpu0"), 3)
        _watch.__exit__(None, None, None)
        _stats["gc"] = _watch.as_dict()
    sys.stdout.write(f"stats {json.dumps(_stats)}\n")
    sys.stdout.flush()
    server.should_exit = True


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks._w5_server")
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--burst", type=int, required=True)
    p.add_argument("--interval", type=float, required=True)
    p.add_argument("--gc-threshold", type=int, default=None)
    p.add_argument("--event-log", default=None)
    p.add_argument("--event-log-prefix", default="runtime")
    p.add_argument("--stop-file", default=None)
    anyio.run(_serve, p.parse_args())


if __name__ == "__main__":
    main()
