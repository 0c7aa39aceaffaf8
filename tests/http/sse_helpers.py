"""Helpers for the HTTP tests: a real ``runtime serve`` subprocess, SSE parsing of a
buffered body, and a raw ASGI driver that sees each chunk as it is sent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
from starlette.applications import Starlette

from runtime import MemoryStore, Runtime, Store
from runtime.asgi import create_app
from runtime.testing import Reply, Step, scripted_agent

REPO = Path(__file__).resolve().parents[2]
AGENT_SPEC = f"{Path(__file__).with_name('sse_agents.py')}:scripted"


DEFAULT_SCRIPT: list[Step] = ["Hello", ", ", "world", Reply("!")]


@dataclass
class Served:
    client: httpx.AsyncClient
    runtime: Runtime
    app: Starlette
    store: Store


@asynccontextmanager
async def open_app(
    agent: Any = None,
    *,
    store: Store | None = None,
    runtime_options: dict[str, Any] | None = None,
    **app_options: Any,
) -> AsyncIterator[Served]:
    """The app over a fresh runtime, its lifespan running, and an httpx client on it
    (ASGITransport: real ASGI calls, no sockets). The runtime's task group must be
    entered and left in one task, hence a context manager rather than an async fixture."""
    store = MemoryStore() if store is None else store
    agent = scripted_agent(DEFAULT_SCRIPT) if agent is None else agent
    rt = Runtime(store, agent, **(runtime_options or {}))
    app = create_app(rt, **app_options)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield Served(client, rt, app, store)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ServerProcess:
    """``python -m runtime serve`` in a subprocess on 127.0.0.1, killable with SIGKILL.

    Its output goes to ``log`` (a file), so a full pipe can never stall it.
    """

    def __init__(self, store: Path, port: int, log: Path, *extra: str, agent: str = AGENT_SPEC):
        self.store = store
        self.port = port
        self.log = log
        self.extra = extra
        self.agent = agent
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = f"http://127.0.0.1:{port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "runtime",
            "serve",
            self.agent,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--store",
            str(self.store),
            "--log-level",
            "warning",
            *self.extra,
        ]

    def start(self, *, timeout: float = 30.0) -> ServerProcess:
        """Start the server and wait until it answers ``/openapi.json``.

        :raises RuntimeError: with the server log if it exits or does not answer in time.
        """
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command(), cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.base_url + "/openapi.json", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"server did not answer within {timeout}s:\n{self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no cleanup, no final save (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def terminate(self, *, timeout: float = 60.0) -> int:
        """SIGTERM (graceful shutdown); returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


@dataclass
class SSEMessage:
    """One parsed SSE message (fields as the WHATWG parser would see them)."""

    id: str | None = None
    event: str | None = None
    data_lines: list[str] = field(default_factory=list)
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    @property
    def data(self) -> dict[str, Any]:
        value: dict[str, Any] = orjson.loads("\n".join(self.data_lines))
        return value


def parse_sse(text: str) -> list[SSEMessage]:
    """Parse a complete ``text/event-stream`` body into messages (blank-line separated);
    comment-only and retry-only blocks are kept so tests can see them."""
    out: list[SSEMessage] = []
    cur = SSEMessage()
    touched = False
    for line in text.replace("\r\n", "\n").split("\n"):
        if line == "":
            if touched:
                out.append(cur)
            cur, touched = SSEMessage(), False
            continue
        touched = True
        if line.startswith(":"):
            cur.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            cur.id = value
        elif name == "event":
            cur.event = value
        elif name == "data":
            cur.data_lines.append(value)
        elif name == "retry":
            cur.retry = int(value)
    if touched:
        out.append(cur)
    return out


def events_of(text: str) -> list[dict[str, Any]]:
    """The event dicts (``data:`` JSON) of an SSE body, checking ``id``/``event`` agree."""
    events = []
    for m in parse_sse(text):
        if not m.data_lines:
            continue
        ev = m.data
        assert m.id == str(ev["seq"]), (m.id, ev)
        assert m.event == ev["type"], (m.event, ev)
        events.append(ev)
    return events


Send = Callable[[dict[str, Any]], Awaitable[None]]


async def drive_asgi_get(
    app: Any,
    path: str,
    on_chunk: Callable[[bytes, anyio.Event], Awaitable[None] | None],
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    query: bytes = b"",
) -> tuple[int, list[bytes]]:
    """Call ``app`` for ``GET path`` directly, the way a server would, and hand each body
    chunk to ``on_chunk(chunk, disconnect)`` as it is sent; setting ``disconnect`` makes
    the next ``receive()`` report ``http.disconnect`` (the client went away).

    Returns the status and every chunk. httpx's ASGITransport buffers whole responses,
    so it cannot show a heartbeat before the stream ends; this can.
    """
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"localhost"), *(headers or [])],
        "client": ("127.0.0.1", 12345),
        "server": ("test", 80),
        "state": {},
    }
    disconnect = anyio.Event()
    sent_request = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent_request
        if not sent_request:
            sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if body:
                chunks.append(body)
                result = on_chunk(body, disconnect)
                if result is not None:
                    await result
            if not message.get("more_body", False):
                disconnect.set()

    await app(scope, receive, send)
    return status, chunks
