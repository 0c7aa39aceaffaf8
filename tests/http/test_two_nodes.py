"""Two real ``runtime serve`` processes (uvicorn) on one real PostgreSQL database
(``RUNTIME_TEST_POSTGRES_DSN``; skipped without it, failing under ``CI=true``).

A session created on node A is fetched and run on node B; a turn live on A is busy
(409) on B; after SIGKILL of A mid-turn, B repairs the session once A's lease has
expired (the prompt once, one interrupted marker, everything a checkpoint acknowledged
still there) and runs a new turn; a paused A (SIGSTOP past its lease, then SIGCONT)
gets ``LeaseLost``, ends its stream with ``error`` ``{"type": "lease_lost"}`` and
overwrites nothing.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import httpx
import orjson
import pytest
from httpx_sse import connect_sse
from postgres_server import postgres_dsn
from sse_helpers import ServerProcess, free_port

Event = dict[str, Any]
LEASE_TTL = 1.5
#: server options: short leases so that the test waits seconds, frequent checkpoints
NODE_OPTIONS = ("--lease-ttl", str(LEASE_TTL), "--checkpoint-interval", "0.1")


async def _create_database(dsn: str, name: str, drop: bool = False) -> None:
    con = await asyncpg.connect(dsn)
    try:
        if drop:
            await con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            await con.execute(f'CREATE DATABASE "{name}"')
    finally:
        await con.close()


@pytest.fixture
def database() -> Iterator[str]:
    """A new database on the test server for this test; dropped at the end."""
    dsn = postgres_dsn()
    name = "two_nodes_" + uuid.uuid4().hex[:12]
    anyio.run(_create_database, dsn, name)
    parts = urlsplit(dsn)
    try:
        yield urlunsplit(parts._replace(path="/" + name))
    finally:
        anyio.run(_create_database, dsn, name, True)


def started_nodes(
    tmp_path: Path, database: str, *options: str, **kw: str
) -> Iterator[list[ServerProcess]]:
    """Start nodes A and B (``runtime serve`` with ``options``; ``agent=`` a spec) on
    the same database, yield them, SIGKILL them at the end if still running."""
    started = [
        ServerProcess(database, free_port(), tmp_path / f"node-{n}.log", *options, **kw)  # type: ignore[arg-type]
        for n in "ab"
    ]
    for node in started:
        node.start()
    yield started
    for node in started:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGCONT)
        node.kill()


@pytest.fixture
def nodes(tmp_path: Path, database: str) -> Iterator[list[ServerProcess]]:
    """Nodes A and B on the same database; SIGKILLed at the end if still running."""
    yield from started_nodes(tmp_path, database, *NODE_OPTIONS)


@pytest.fixture
def long_lease_nodes(tmp_path: Path, database: str) -> Iterator[list[ServerProcess]]:
    """As :func:`nodes`, with a 10 s lease: for a test about a turn that lives, whose
    lease must not expire because a loaded machine stalled A's loop past the short
    lease (B would then rightly take the stream for dead)."""
    yield from started_nodes(
        tmp_path, database, "--lease-ttl", "10", "--checkpoint-interval", "0.1"
    )


@contextmanager
def clients(*nodes: ServerProcess) -> Iterator[list[httpx.Client]]:
    """An HTTP client per node."""
    with ExitStack() as stack:
        yield [stack.enter_context(httpx.Client(base_url=n.base_url, timeout=30)) for n in nodes]


def start_turn(client: httpx.Client, sid: str, message: str) -> str:
    r = client.post(f"/api/sessions/{sid}/turns", json={"message": message})
    assert r.status_code == 202, r.text
    stream_id: str = r.json()["stream_id"]
    return stream_id


def read_until(client: httpx.Client, stream_id: str, stop_type: str, after: int = 0) -> list[Event]:
    """Events of the stream after ``after`` up to the first of type ``stop_type``."""
    headers = {"Last-Event-ID": str(after)} if after else {}
    out: list[Event] = []
    with connect_sse(client, "GET", f"/api/streams/{stream_id}/events", headers=headers) as src:
        assert src.response.status_code == 200, src.response.read()
        for sse in src.iter_sse():
            if not sse.data:
                continue
            out.append(orjson.loads(sse.data))
            if out[-1]["type"] == stop_type:
                break
    return out


def wait_for(predicate: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_created_on_a_fetched_and_run_on_b(nodes: list[ServerProcess]) -> None:
    a, b = nodes
    with clients(a, b) as (ca, cb):
        sid = ca.post("/api/sessions", json={"title": "made on A"}).json()["session_id"]
        assert cb.get("/api/sessions").json()["sessions"] == []  # nothing stored yet
        fetched = cb.get(f"/api/sessions/{sid}")
        assert fetched.status_code == 200, fetched.text
        assert fetched.json()["title"] == "made on A"
        stream_id = start_turn(cb, sid, "tokens=5")
        events = read_until(cb, stream_id, "stream.end")
        assert [e["type"] for e in events][-2:] == ["done", "stream.end"]
        on_a = ca.get(f"/api/sessions/{sid}").json()
        assert on_a["title"] == "made on A" and on_a["active_stream_id"] is None
        assert [m["role"] for m in on_a["messages"]] == ["user", "assistant"]
        assert [s["session_id"] for s in ca.get("/api/sessions").json()["sessions"]] == [sid]


def test_turn_live_on_a_is_busy_on_b(nodes: list[ServerProcess]) -> None:
    a, b = nodes
    with clients(a, b) as (ca, cb):
        sid = ca.post("/api/sessions").json()["session_id"]
        stream_id = start_turn(ca, sid, "tokens=60 delay=0.05 tool_every=5")
        r = cb.post(f"/api/sessions/{sid}/turns", json={"message": "me too"})
        assert r.status_code == 409, r.text
        status = cb.get(f"/api/sessions/{sid}/status").json()
        assert status["active_stream_id"] == stream_id and status["live"] is True
        assert cb.delete(f"/api/sessions/{sid}").status_code == 409
        assert read_until(ca, stream_id, "stream.end")[-2]["type"] == "done"
        assert start_turn(cb, sid, "tokens=2")  # free again once A's turn ended


def test_a_turn_live_on_a_is_followed_from_b_through_the_store(
    long_lease_nodes: list[ServerProcess],
) -> None:
    """Without a shared event log, B has no log of A's stream: B's client gets the
    events A's checkpoints stored, as they are stored, to the real end (before: B made
    up ``error`` ``{"type": "interrupted"}`` and ``stream.end`` for a turn that was
    running, because only a dead stream is missing from every log)."""
    a, b = long_lease_nodes
    with clients(a, b) as (ca, cb):
        sid = ca.post("/api/sessions").json()["session_id"]
        stream_id = start_turn(ca, sid, "tokens=40 delay=0.05 tool_every=5")
        on_b = read_until(cb, stream_id, "stream.end")
        assert [e["seq"] for e in on_b] == list(range(1, len(on_b) + 1))
        assert [e["type"] for e in on_b][-2:] == ["done", "stream.end"], on_b[-2:]
        assert not [e for e in on_b if e["type"] == "error"]
        tokens = "".join(e["data"]["text"] for e in on_b if e["type"] == "token")
        assert tokens == "".join(f"w{i:03d} " for i in range(1, 41))
        assert read_until(ca, stream_id, "stream.end") == on_b


def _checkpointed(client: httpx.Client, stream_id: str, tools: int) -> Event:
    """Follow the stream until a checkpoint that persisted at least ``tools`` tool
    results; returns that checkpoint event.

    The first checkpoint event after the ``tools``-th ``tool.completed`` may come from
    a save that was already in flight when that tool finished (its event is published
    when the save returns); the save after it started later, so the second one is
    the first that is sure to hold the result."""
    seen = 0
    after = 0
    with connect_sse(client, "GET", f"/api/streams/{stream_id}/events") as src:
        for sse in src.iter_sse():
            if not sse.data:
                continue
            event = orjson.loads(sse.data)
            if event["type"] == "tool.completed":
                seen += 1
            if event["type"] == "checkpoint" and seen >= tools:
                after += 1
                if after == 2:
                    return dict(event)
    raise AssertionError("the stream ended before the checkpoint")


def test_sigkill_a_then_b_repairs_after_the_lease_and_runs_a_new_turn(
    nodes: list[ServerProcess],
) -> None:
    a, b = nodes
    with clients(a, b) as (ca, cb):
        sid = ca.post("/api/sessions").json()["session_id"]
        stream_id = start_turn(ca, sid, "the prompt tokens=2000 delay=0.01 tool_every=3")
        checkpoint = _checkpointed(ca, stream_id, tools=4)
        a.kill()
        killed_at = time.monotonic()
        # Until the lease expires, B trusts A: the session is busy, nothing repaired. A
        # running turn extends its lease once a third of the ttl has passed since the
        # last extension, so at least about two thirds of it are left at the kill.
        early = cb.get(f"/api/sessions/{sid}/status").json()
        if time.monotonic() - killed_at < LEASE_TTL * 0.5:
            assert early["active_stream_id"] == stream_id and early["live"] is True
            assert cb.post(f"/api/sessions/{sid}/turns", json={"message": "x"}).status_code == 409
        repaired = wait_for(
            lambda: (s := cb.get(f"/api/sessions/{sid}").json())["active_stream_id"] is None and s,
            "B to repair the session after the lease expired",
        )
        assert time.monotonic() - killed_at >= LEASE_TTL * 0.6  # (2/3 less timer slack)
        messages = repaired["messages"]
        prompts = [m for m in messages if m["role"] == "user"]
        assert [m["content"] for m in prompts] == ["the prompt tokens=2000 delay=0.01 tool_every=3"]
        markers = [m for m in messages if m.get("type") == "interrupted"]
        assert len(markers) == 1 and markers[0]["_error"] is True
        assert messages[-1] is not None and messages[-1].get("type") == "interrupted"
        # Everything the checkpoint acknowledged is there.
        assert len(messages) - 1 >= checkpoint["data"]["messages"]
        assert sum(1 for m in messages if m["role"] == "tool") >= 4
        again = cb.get(f"/api/sessions/{sid}").json()["messages"]
        assert again == messages  # repaired once
        new_stream = start_turn(cb, sid, "tokens=3")
        assert read_until(cb, new_stream, "stream.end")[-2]["type"] == "done"
        final = cb.get(f"/api/sessions/{sid}").json()["messages"]
        assert final[: len(messages)] == messages
        assert [m["role"] for m in final[len(messages) :]] == ["user", "assistant"]


def test_paused_a_loses_its_lease_and_overwrites_nothing(nodes: list[ServerProcess]) -> None:
    a, b = nodes
    assert a.proc is not None
    with clients(a, b) as (ca, cb):
        sid = ca.post("/api/sessions").json()["session_id"]
        stream_id = start_turn(ca, sid, "tokens=3000 delay=0.01 tool_every=3")
        checkpoint = _checkpointed(ca, stream_id, tools=2)
        a.proc.send_signal(signal.SIGSTOP)
        time.sleep(LEASE_TTL + 0.5)
        repaired = wait_for(
            lambda: (s := cb.get(f"/api/sessions/{sid}").json())["active_stream_id"] is None and s,
            "B to repair the paused node's session",
        )
        assert sum(1 for m in repaired["messages"] if m.get("type") == "interrupted") == 1
        a.proc.send_signal(signal.SIGCONT)
        tail = read_until(ca, stream_id, "stream.end", after=checkpoint["seq"])
        errors = [e for e in tail if e["type"] == "error"]
        assert errors and errors[-1]["data"]["type"] == "lease_lost", tail[-3:]
        assert tail[-1]["data"]["outcome"] == "lease_lost"
        after = cb.get(f"/api/sessions/{sid}").json()
        assert after == repaired  # A wrote nothing after it lost the lease
        assert ca.get(f"/api/sessions/{sid}").json() == repaired
