"""A graceful shutdown suspends a live turn instead of cancelling it (``on_shutdown=
"suspend"``, the default with ``resume="auto"``): the turn is saved whole and kept for
a resume, and the next runtime on the store finishes it. Real FileStores (files and
fsync) in ``tmp_path``; the tools count what really ran in a file they append to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from runtime import Event, FileStore, Runtime, Turn

from .agents import charge, steps
from .restart import turn_over


def _effects(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def _wait_for(path: Path, n: int) -> None:
    with anyio.fail_after(30):
        while len(_effects(path)) < n:
            await anyio.sleep(0.01)


async def _stored(root: Path, session_id: str) -> tuple[dict[str, Any], list[Event]]:
    """The session as stored (no runtime: nothing repairs or resumes it) and its last
    stream's durable events."""
    store = FileStore(root)
    await store.open()
    try:
        session = await store.load(session_id)
        stream_id = session.active_stream_id
        assert stream_id is not None
        return session.to_dict(), await store.load_events(session_id, stream_id, 0)
    finally:
        await store.aclose()


async def _finish(root: Path, agent: Any, session_id: str, **options: Any) -> dict[str, Any]:
    """A new runtime with ``resume="auto"`` on ``root``; the session once its turn ended."""
    async with Runtime(
        FileStore(root), agent, resume="auto", checkpoint_interval=0.05, **options
    ) as rt:
        with anyio.fail_after(60):
            await turn_over(rt, session_id)
        return (await rt.get_session(session_id)).to_dict()


@pytest.fixture
def effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "effects"
    monkeypatch.setenv("RESUME_SIDE_EFFECTS", str(path))
    return path


async def test_a_suspended_turn_is_saved_whole_and_the_next_runtime_finishes_it(
    tmp_path: Path, effects: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six steps of a non-idempotent tool; the runtime leaves after three (grace 0).
    Everything the turn made is durable with its record kept, no ``cancelled`` anywhere;
    the next runtime resumes it although ``max_resume_attempts=0`` (a suspension is no
    crash), runs steps 4-6 only, and a subscriber of this process ends, not hangs."""
    monkeypatch.setenv("RESUME_STEPS", "6")
    monkeypatch.setenv("RESUME_STEP_DELAY", "0.3")
    root = tmp_path / "store"
    seen: list[Event] = []
    with anyio.fail_after(30):
        async with (
            anyio.create_task_group() as tg,  # its exit waits for the subscriber
            Runtime(
                FileStore(root), steps, resume="auto", shutdown_grace=0, checkpoint_interval=30
            ) as rt,
        ):
            assert rt.on_shutdown == "suspend"
            session = await rt.create_session()
            stream_id = await rt.start_turn(session.session_id, "count")

            async def follow() -> None:
                seen.extend([e async for e in rt.events(stream_id)])

            tg.start_soon(follow)
            await _wait_for(effects, 3)
            await anyio.sleep(0.1)  # the third result recorded, the agent asleep
    # the subscriber of this process drained what the turn published and stopped
    assert seen[0].type == "stream.started"
    assert not {"cancelled", "done", "error", "stream.end"} & {e.type for e in seen}

    stored, durable = await _stored(root, session.session_id)
    assert stored["active_stream_id"] == stream_id
    record = stored["metadata"]["runtime.resume"]
    assert record["suspended"] == 1 and isinstance(record["suspended_at"], float)
    assert not any(m.get("type") in ("cancelled", "interrupted") for m in stored["messages"])
    # the checkpoint interval is 30 s: what is durable came with the suspension
    assert [e.seq for e in durable] == [e.seq for e in seen]
    assert [e.type for e in durable].count("tool.completed") == 3

    session_after = await _finish(root, steps, session.session_id, max_resume_attempts=0)
    assert _effects(effects) == [f"step-{i}" for i in range(1, 7)]  # each once, in order
    assert session_after["active_stream_id"] is None
    assert "runtime.resume" not in session_after["metadata"]
    assert session_after["messages"][-1]["content"].endswith("\ntotal: 91")
    assert not any(m.get("_error") or m.get("_partial") for m in session_after["messages"])


async def test_a_tool_call_running_at_the_shutdown_stays_open_and_is_settled_on_resume(
    tmp_path: Path, effects: Path
) -> None:
    """The call took its effect and hangs when the runtime leaves: it is not failed as
    ``cancelled`` (nothing says it did not happen); the resumed turn gives it the
    "outcome unknown" result and does not run it again."""
    root = tmp_path / "store"
    async with Runtime(FileStore(root), charge, resume="auto", shutdown_grace=0) as rt:
        session = await rt.create_session()
        await rt.start_turn(session.session_id, "charge me")
        await _wait_for(effects, 1)
    stored, durable = await _stored(root, session.session_id)
    assert [e.type for e in durable] == ["stream.started", "tool.started"]
    assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]

    session_after = await _finish(root, charge, session.session_id)
    assert _effects(effects) == ["charge"]
    assert session_after["messages"][-1]["content"] == "charge: outcome_unknown; attempt 1"


async def test_with_resume_manual_a_shutdown_still_cancels_unless_asked_to_suspend(
    tmp_path: Path,
) -> None:
    async def forever(turn: Turn) -> None:
        await turn.token("thinking ")
        await anyio.sleep(3600)

    for on_shutdown, marker in ((None, "cancelled"), ("suspend", None)):
        root = tmp_path / str(on_shutdown)
        async with Runtime(
            FileStore(root), forever, shutdown_grace=0, on_shutdown=on_shutdown
        ) as rt:
            session = await rt.create_session()
            stream_id = await rt.start_turn(session.session_id, "go")
            async for event in rt.events(stream_id):
                if event.type == "token":
                    break
        store = FileStore(root)
        await store.open()
        try:
            stored = await store.load(session.session_id)
        finally:
            await store.aclose()
        types = [m.get("type") for m in stored.messages]
        if marker is None:  # kept: the next runtime marks it interrupted, resumable by hand
            assert stored.active_stream_id == stream_id and "cancelled" not in types
            async with Runtime(FileStore(root), forever) as rt:
                status = await rt.session_status(session.session_id)
                assert status["interrupted"] == {
                    "stream_id": stream_id,
                    "attempt": 0,
                    "attempts_left": 4,  # the resume after the suspension is free
                }
        else:
            assert stored.active_stream_id is None and types[-1] == marker
