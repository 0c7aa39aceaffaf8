"""Durable resume across nodes: two real ``runtime serve --resume auto`` processes on one
real PostgreSQL database (``RUNTIME_TEST_POSTGRES_DSN``; skipped without it, failing
under ``CI=true``).

Node A runs a turn of twelve non-idempotent tool calls (``tests/resume/agents.py:steps``;
each execution appends its call id to a file, ``O_APPEND`` + ``fsync``: what really ran).
SIGKILL of A mid-turn: once A's lease has expired, node B resumes the same stream by
itself and completes it; every tool ran exactly once, and the tool ledger in the
database shows which attempt ran which call. SIGSTOP of A instead (a zombie): B resumes
and completes the turn; after SIGCONT, A's next ledger and checkpoint writes are fenced
(``LeaseLost``), its stream ends with ``lease_lost``, no tool runs twice and neither the
session nor the ledger changes.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sse_helpers import REPO, ServerProcess
from test_two_nodes import database, read_until, start_turn, started_nodes, wait_for

from runtime.stores.postgres import PostgresStore

__all__ = ["database"]  # the fixture, shared with test_two_nodes

STEPS = 12
STEP_DELAY = 0.3
LEASE_TTL = 1.5
AGENT = f"{REPO / 'tests' / 'resume' / 'agents.py'}:steps"
NODE_OPTIONS = (
    "--lease-ttl",
    str(LEASE_TTL),
    "--checkpoint-interval",
    "0.1",
    "--resume",
    "auto",
)
#: the turn's final message: a line per step (streamed), then the total (the reply)
REPORT = (
    "".join(f"step {i}: {i * i}\n" for i in range(1, STEPS + 1))
    + "total: "
    + str(sum(i * i for i in range(1, STEPS + 1)))
)


@pytest.fixture
def effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file each tool execution of either node appends its call id to."""
    path = tmp_path / "effects"
    monkeypatch.setenv("RESUME_SIDE_EFFECTS", str(path))
    monkeypatch.setenv("RESUME_STEPS", str(STEPS))
    monkeypatch.setenv("RESUME_STEP_DELAY", str(STEP_DELAY))
    return path


@pytest.fixture
def nodes(tmp_path: Path, database: str, effects: Path) -> Iterator[list[ServerProcess]]:
    yield from started_nodes(tmp_path, database, *NODE_OPTIONS, agent=AGENT)


def ran(effects: Path) -> list[str]:
    return effects.read_text().splitlines() if effects.exists() else []


def ledger(database: str, session_id: str, stream_id: str) -> list[dict[str, Any]]:
    """The stream's tool ledger as the database holds it (a store of this process)."""

    async def read() -> list[dict[str, Any]]:
        async with PostgresStore(database) as store:
            return [r.to_dict() for r in await store.tool_calls(session_id, stream_id)]

    return anyio.run(read)


def run_until_step(client: httpx.Client, effects: Path) -> tuple[str, str, int]:
    """Start the turn on ``client``'s node and wait until a random step has run and
    recorded its result (the pause after a step); returns session, stream, step."""
    sid = client.post("/api/sessions").json()["session_id"]
    stream_id = start_turn(client, sid, "run the steps")
    step = random.Random().randint(2, STEPS - 4)
    wait_for(lambda: len(ran(effects)) >= step, f"step {step} to run")
    time.sleep(STEP_DELAY / 3)  # in the pause after the step: its result is recorded
    return sid, stream_id, len(ran(effects))


def finished_on(client: httpx.Client, sid: str) -> dict[str, Any]:
    session: dict[str, Any] = wait_for(
        lambda: (s := client.get(f"/api/sessions/{sid}").json())["active_stream_id"] is None and s,
        "the resumed turn to finish",
        timeout=90,
    )
    return session


def check_completed_once(session: dict[str, Any], effects: Path) -> None:
    assert sorted(ran(effects)) == sorted(f"step-{i}" for i in range(1, STEPS + 1))
    messages = session["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["run the steps"]
    assert not [m for m in messages if m.get("type") == "interrupted" or m.get("_error")]
    assert messages[-1]["role"] == "assistant" and messages[-1]["content"] == REPORT
    tool_results = [m for m in messages if m["role"] == "tool"]
    assert len(tool_results) == STEPS


def test_b_resumes_a_turn_of_a_killed_node_once_its_lease_expired(
    nodes: list[ServerProcess], database: str, effects: Path
) -> None:
    a, b = nodes
    with (
        httpx.Client(base_url=a.base_url, timeout=30) as ca,
        httpx.Client(base_url=b.base_url, timeout=30) as cb,
    ):
        sid, stream_id, done_on_a = run_until_step(ca, effects)
        a.kill()
        killed_at = time.monotonic()
        session = finished_on(cb, sid)
        # a running turn extends its lease once a third of the ttl has passed since the
        # last extension: at least about two thirds of it are left at the kill
        assert time.monotonic() - killed_at >= LEASE_TTL * 0.6, "B waited for A's lease"
        check_completed_once(session, effects)
        records = ledger(database, sid, stream_id)
        assert [r["call_id"] for r in records] == [f"step-{i}" for i in range(1, STEPS + 1)]
        assert {r["state"] for r in records} == {"completed"}
        assert [r["attempt"] for r in records] == [0] * done_on_a + [1] * (STEPS - done_on_a)
        events = read_until(cb, stream_id, "stream.end")
        seqs = [e["seq"] for e in events]
        assert seqs == sorted(set(seqs)), "each seq once, in order"
        assert [e["data"]["attempt"] for e in events if e["type"] == "stream.resumed"] == [1]
        assert [e["type"] for e in events][-2:] == ["done", "stream.end"]


def test_a_paused_node_cannot_write_after_b_resumed_its_turn(
    nodes: list[ServerProcess], database: str, effects: Path
) -> None:
    a, b = nodes
    assert a.proc is not None
    with (
        httpx.Client(base_url=a.base_url, timeout=30) as ca,
        httpx.Client(base_url=b.base_url, timeout=30) as cb,
    ):
        sid, stream_id, _ = run_until_step(ca, effects)
        a.proc.send_signal(signal.SIGSTOP)
        session = finished_on(cb, sid)
        check_completed_once(session, effects)
        records = ledger(database, sid, stream_id)
        a.proc.send_signal(signal.SIGCONT)
        # A wakes in its step loop: its next ledger intent (and checkpoint) carries the
        # old lease token and is refused; the turn ends there
        tail = read_until(ca, stream_id, "stream.end")
        errors = [e for e in tail if e["type"] == "error"]
        assert errors and errors[-1]["data"]["type"] == "lease_lost", tail[-3:]
        assert tail[-1]["data"]["outcome"] == "lease_lost"
        assert sorted(ran(effects)) == sorted(f"step-{i}" for i in range(1, STEPS + 1))
        assert ledger(database, sid, stream_id) == records, "A wrote no ledger record"
        assert cb.get(f"/api/sessions/{sid}").json() == session, "A overwrote nothing"
        assert ca.get(f"/api/sessions/{sid}").json() == session
