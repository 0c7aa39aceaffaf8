"""The SSE response's own machinery over real uvicorn and real sockets: heartbeats while
a stream is idle, a client's disconnect ending its response (and freeing its
subscription) without waiting for the next event or heartbeat, and server shutdown
completing the chunked body cleanly.

The response serves each stream from the ASGI task with one helper task (the
disconnect listener) and one timer, instead of sse-starlette's task group of four, so
these behaviours are the project's to keep.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import anyio
import uvicorn
from sse_helpers import ServerProcess, free_port

from runtime import MemoryStore, Runtime, Turn
from runtime.asgi import create_app


def _get(port: int, stream_id: str) -> bytes:
    return (
        f"GET /api/streams/{stream_id}/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()


def _read_until(sock: socket.socket, marker: bytes, data: bytes = b"") -> bytes:
    """Bytes from ``sock`` (blocking) until ``marker`` appears or the peer closes."""
    while marker not in data:
        more = sock.recv(65536)
        if not more:
            break
        data += more
    return data


def _requests_in_flight() -> int:
    """uvicorn's tasks that run a request (one per response in progress)."""
    return sum(
        1 for t in asyncio.all_tasks() if "run_asgi" in getattr(t.get_coro(), "__qualname__", "")
    )


def _start_turn(base_url: str, message: str) -> str:
    import httpx

    with httpx.Client(base_url=base_url, timeout=30) as client:
        sid = client.post("/api/sessions").json()["session_id"]
        r = client.post(f"/api/sessions/{sid}/turns", json={"message": message})
        assert r.status_code == 202, r.text
        stream_id: str = r.json()["stream_id"]
        return stream_id


def test_heartbeats_are_sent_while_the_stream_is_idle(tmp_path: Path) -> None:
    """``--heartbeat 0.2`` and an agent silent for 1.5 s between its two tokens: the
    idle gap carries heartbeat comments, and the stream still ends cleanly; the
    response has the SSE headers (no caching, no proxy buffering)."""
    port = free_port()
    server = ServerProcess(tmp_path / "store", port, tmp_path / "log", "--heartbeat", "0.2")
    server.start()
    try:
        stream_id = _start_turn(server.base_url, "tokens=2 delay=1.5")
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(_get(port, stream_id))
            body = _read_until(sock, b"event: stream.end")
        head = body.partition(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 200"), head
        for header in (
            b"content-type: text/event-stream",
            b"cache-control: no-store",
            b"x-accel-buffering: no",  # nginx must not buffer the stream
        ):
            assert header in head, head
        _, _, after_first = body.partition(b"event: token")
        gap, _, _ = after_first.partition(b"event: token")
        assert b"event: token" in after_first, body  # the second token came
        assert b": heartbeat\n\n" in gap, body  # sent while the agent was quiet
    finally:
        server.kill()


def test_shutdown_completes_the_chunked_body(tmp_path: Path) -> None:
    """SIGTERM while a response streams: the response ends with the chunked body's
    terminating chunk (a clean end an ``EventSource`` reconnects after), not a cut
    connection, and the server exits 0."""
    port = free_port()
    server = ServerProcess(
        tmp_path / "store", port, tmp_path / "log", "--heartbeat", "0.5", "--shutdown-grace", "0"
    )
    server.start()
    try:
        stream_id = _start_turn(server.base_url, "tokens=100000 delay=0.01")
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(_get(port, stream_id))
            head = _read_until(sock, b"event: token")
            assert head.startswith(b"HTTP/1.1 200"), head
            assert b"transfer-encoding: chunked" in head.lower(), head
            assert server.proc is not None
            server.proc.terminate()
            rest = _read_until(sock, b"\r\n0\r\n\r\n")
            tail = rest[-5:]
            more = sock.recv(65536)  # then the server closes the connection
        assert tail == b"0\r\n\r\n", rest[-200:]
        assert more == b""
        assert server.terminate() == 0, server.output()
        assert "without completing response" not in server.output()
    finally:
        server.kill()


async def test_disconnect_ends_the_response_at_once_while_the_stream_is_idle() -> None:
    """Three clients follow a stream that stays idle (no events, a heartbeat interval
    of an hour) in a real uvicorn server; when they close their sockets, their
    responses end and their tasks are gone without any event or heartbeat to notice
    it by, and the turn runs on."""
    go = anyio.Event()

    async def agent(turn: Turn) -> None:
        await turn.token("a ")
        await go.wait()
        await turn.reply("b")

    rt = Runtime(MemoryStore(), agent)
    app = create_app(rt, api_token=None, heartbeat=3600.0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: server.serve(sockets=[sock]))
        while not server.started:
            await anyio.sleep(0.01)
        base = f"http://127.0.0.1:{port}"
        stream_id = await anyio.to_thread.run_sync(_start_turn, base, "x")
        assert _requests_in_flight() == 0
        clients = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(3)]
        for client in clients:
            client.sendall(_get(port, stream_id))
        for client in clients:
            await anyio.to_thread.run_sync(_read_until, client, b"event: token")
        assert _requests_in_flight() == 3
        for client in clients:
            client.close()
        with anyio.fail_after(10):  # a bound on a hang, not a timing: an hour otherwise
            while _requests_in_flight():
                await anyio.sleep(0.01)
        assert rt.is_live(stream_id)  # the responses ended, the turn did not
        go.set()
        await rt.wait_stream(stream_id)
        server.should_exit = True
