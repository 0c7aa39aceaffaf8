"""A turn's task and its saves: started without waiting for it to run, cancelled
before it ran, never outliving the runtime, and its checkpoints one at a time
(docs/architecture.md, "What a live turn holds, and the checkpoint timer")."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio

from runtime import FileStore, MemoryStore, Runtime, Session, Turn


async def test_a_turn_cancelled_before_its_task_ran_ends_cancelled_once() -> None:
    async def agent(turn: Turn) -> None:
        await anyio.sleep(3600)

    async with Runtime(MemoryStore(), agent) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, "hi")
        with anyio.fail_after(20):
            assert await rt.cancel(stream_id)  # no await in between: the task has not run
        events = [e async for e in rt.events(stream_id)]
        saved = (await rt.get_session(s.session_id)).messages
    assert [e.type for e in events] == ["stream.started", "cancelled", "stream.end"]
    assert [e.seq for e in events] == [1, 2, 3]
    assert [m["role"] for m in saved] == ["user", "assistant"]
    assert sum(1 for m in saved if m.get("_cancelled")) == 1


async def test_no_task_of_a_turn_outlives_the_runtime(tmp_path: Path) -> None:
    """Turns still running at shutdown are cancelled (partial output kept) and their
    tasks have returned when ``async with Runtime`` exits."""
    streaming = anyio.Event()

    async def agent(turn: Turn) -> None:
        await turn.token("partial")
        streaming.set()
        await anyio.sleep(3600)

    before = asyncio.all_tasks()
    sessions = []
    async with Runtime(FileStore(tmp_path), agent, shutdown_grace=0.0) as rt:
        for _ in range(20):
            s = rt.new_session()
            sessions.append(s.session_id)
            await rt.start_turn(s.session_id, "hi")
        with anyio.fail_after(20):
            await streaming.wait()
    assert asyncio.all_tasks() == before
    async with FileStore(tmp_path) as store:
        for session_id in sessions:
            saved = await store.load(session_id)
            assert saved.active_stream_id is None
            assert sum(1 for m in saved.messages if m.get("_cancelled")) == 1
            assert sum(1 for m in saved.messages if m.get("_partial")) == 1


class SlowSaves(MemoryStore):
    """A MemoryStore whose saves take a while and count how many run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.most = 0
        self.saves = 0

    async def save(self, session: Session, **kwargs: Any) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        self.saves += 1
        try:
            await anyio.sleep(0.02)
            await super().save(session, **kwargs)
        finally:
            self.running -= 1


async def test_a_turns_checkpoints_run_one_at_a_time() -> None:
    """The timed checkpoints and those that extend the seq reservation (every ~2,000
    events) both run while the agent streams: they take turns, and every event is
    durable once, in order."""
    n = 9000

    async def agent(turn: Turn) -> None:
        for i in range(n):
            await turn.token(f"t{i} ")
            if i % 100 == 0:
                await anyio.sleep(0.001)
        await turn.reply()

    store = SlowSaves()
    async with Runtime(store, agent, checkpoint_interval=0.01) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, "hi")
        with anyio.fail_after(60):
            await rt.wait_stream(stream_id)
        durable = await store.load_events(s.session_id, stream_id, 0)
        saved = await rt.get_session(s.session_id)
    assert store.saves > 5
    assert store.most == 1
    assert [e.seq for e in durable] == list(range(1, len(durable) + 1))
    tokens = [e.data["text"] for e in durable if e.type == "token"]
    assert tokens == [f"t{i} " for i in range(n)]
    assert saved.messages[-1]["content"] == "".join(tokens)
