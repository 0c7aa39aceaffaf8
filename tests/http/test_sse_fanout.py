"""SSE fan-out over real uvicorn and real sockets: what a subscriber holds while it waits
for the next burst, and the path its body chunks take through the ASGI stack.

Body chunks go through the ``send`` the runtime's app was called with, past the send
wrappers of its own middleware (which only look at the start message); a host app's
middleware around a mounted runtime app still sees every chunk, and the CORS headers of
the runtime's own middleware are still on the response.
"""

from __future__ import annotations

import contextlib
import gc
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime import MemoryStore, Runtime, Turn
from runtime.asgi import create_app

BURST = 20


def _get(port: int, path: str, origin: str | None = None) -> bytes:
    extra = f"Origin: {origin}\r\n" if origin else ""
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Accept: text/event-stream\r\n{extra}Connection: close\r\n\r\n"
    ).encode()


def _start_turn(base_url: str, prefix: str = "") -> str:
    import httpx

    with httpx.Client(base_url=base_url, timeout=30) as client:
        sid = client.post(f"{prefix}/api/sessions").json()["session_id"]
        r = client.post(f"{prefix}/api/sessions/{sid}/turns", json={"message": "x"})
        assert r.status_code == 202, r.text
        stream_id: str = r.json()["stream_id"]
        return stream_id


class _Reader(threading.Thread):
    """One SSE client on a blocking socket: counts the ``token`` events it got."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.data = bytearray()
        self.tokens = 0

    def run(self) -> None:
        while more := self.sock.recv(65536):
            self.data += more
            self.tokens = self.data.count(b"event: token\n")


async def _serve(app: ASGIApp) -> tuple[uvicorn.Server, socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    return server, sock, sock.getsockname()[1]


async def _until(predicate: Any) -> None:
    with anyio.fail_after(30):  # a bound on a hang, not a timing
        while not predicate():
            await anyio.sleep(0.01)


async def test_a_subscriber_waiting_for_the_next_burst_holds_few_new_objects() -> None:
    """100 SSE clients follow one stream whose agent emits bursts of 20 tokens on
    demand. Between two bursts (every client has the first, so every response waits for
    the next) at most 5 GC-tracked objects per subscriber were made and are still alive:
    the wait itself is a future, its iterator and the task's wake-up (no coroutine), and
    this test's reader thread, blocked in ``recv``, holds its argument tuple.
    What 1,000 subscribers hold across a wait is what each young collection walks and
    each middle one promotes (docs/benchmarks.md, W5); the response used to hold 10 per
    subscriber per burst, then 5 (two coroutines of the subscription's and the log's),
    6 here."""
    n = 100
    bursts = [anyio.Event() for _ in range(3)]

    async def agent(turn: Turn) -> None:
        for b, go in enumerate(bursts):
            await go.wait()
            for i in range(BURST):
                await turn.token(f"b{b}t{i} ")

    rt = Runtime(MemoryStore(), agent)
    server, sock, port = await _serve(create_app(rt, api_token=None, heartbeat=3600.0))
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: server.serve(sockets=[sock]))
        await _until(lambda: server.started)
        stream_id = await anyio.to_thread.run_sync(_start_turn, f"http://127.0.0.1:{port}")
        readers = []
        for _ in range(n):
            client = socket.create_connection(("127.0.0.1", port), timeout=30)
            client.sendall(_get(port, f"/api/streams/{stream_id}/events"))
            readers.append(_Reader(client))
        for reader in readers:
            reader.start()
        await _until(lambda: all(r.data for r in readers))  # every response started

        bursts[0].set()
        await _until(lambda: all(r.tokens == BURST for r in readers))
        await anyio.sleep(0.05)
        before = gc.get_objects()  # kept alive, so no new object can reuse an id
        seen = {id(o) for o in before}
        bursts[1].set()
        await _until(lambda: all(r.tokens == 2 * BURST for r in readers))
        await anyio.sleep(0.05)
        new = [o for o in gc.get_objects() if id(o) not in seen]
        del before
        kinds: dict[str, int] = {}
        for o in new:
            kinds[type(o).__name__] = kinds.get(type(o).__name__, 0) + 1
        assert len(new) <= 5 * n, sorted(kinds.items(), key=lambda kv: -kv[1])[:10]
        del new

        bursts[2].set()
        await rt.wait_stream(stream_id)
        await _until(lambda: all(not r.is_alive() for r in readers))  # the server closed
        for reader in readers:
            reader.sock.close()
            assert reader.tokens == 3 * BURST
            assert b"event: stream.end" in reader.data
        server.should_exit = True


class _Recorder:
    """A host app's middleware that sees (and so could change) every body chunk."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.body = bytearray()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.body":
                self.body += message.get("body", b"")
            await send(message)

        await self.app(scope, receive, recording_send)


async def test_a_mounted_apps_stream_passes_through_the_hosts_middleware_with_cors() -> None:
    """The runtime's app mounted under ``/agent`` in a host app whose middleware records
    every body chunk: an SSE client with an allowed ``Origin`` gets the whole stream,
    the runtime's CORS header, and the host's middleware saw every byte of the body."""

    async def agent(turn: Turn) -> None:
        for i in range(50):
            await turn.token(f"t{i} ")

    rt = Runtime(MemoryStore(), agent)
    inner = create_app(rt, api_token=None, cors_origins=["https://app.example"])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with rt:
            yield

    host = Starlette(routes=[Mount("/agent", app=inner)], lifespan=lifespan)
    recorder = _Recorder(host)
    server, sock, port = await _serve(recorder)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: server.serve(sockets=[sock]))
        await _until(lambda: server.started)
        stream_id = await anyio.to_thread.run_sync(
            _start_turn, f"http://127.0.0.1:{port}", "/agent"
        )
        await rt.wait_stream(stream_id)
        recorder.body.clear()
        client = socket.create_connection(("127.0.0.1", port), timeout=30)
        client.sendall(
            _get(port, f"/agent/api/streams/{stream_id}/events?after_seq=0", "https://app.example")
        )
        reader = _Reader(client)
        await anyio.to_thread.run_sync(reader.run)
        client.close()
        head, _, body = bytes(reader.data).partition(b"\r\n\r\n")
        assert b"access-control-allow-origin: https://app.example" in head.lower(), head
        assert reader.tokens == 50
        assert b"event: stream.end" in body
        # the host's middleware saw the body the client got (de-chunked: the same SSE text)
        assert b"event: stream.end" in recorder.body
        assert recorder.body.count(b"event: token\n") == 50
        assert _dechunk(body) == bytes(recorder.body)
        server.should_exit = True


def _dechunk(body: bytes) -> bytes:
    """An HTTP/1.1 chunked body's payload."""
    out = bytearray()
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2 :]
    return bytes(out)
