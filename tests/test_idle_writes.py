"""Writes to a session no turn owns (``rename_session``) are one conditional write: a
turn that starts, or runs to its end, between their load and their save is never
overwritten with the older state they loaded."""

from __future__ import annotations

import anyio
import pytest
from pausing_store import PausingStore

from runtime import MemoryStore, Runtime, SessionBusy, Turn


async def test_rename_racing_a_turn_start_is_busy_and_leaves_the_turn_alone() -> None:
    store = PausingStore()
    release = anyio.Event()

    async def agent(turn: Turn) -> None:
        if turn.user_message == "second":
            await release.wait()
        await turn.reply("answer")

    async with Runtime(store, agent) as rt:
        s = await rt.create_session(title="before")
        await rt.wait_stream(await rt.start_turn(s.session_id, "warm up"))
        reached, go = anyio.Event(), anyio.Event()
        store.armed = (reached, go)
        outcome: list[BaseException | None] = []

        async def rename() -> None:
            try:
                await rt.rename_session(s.session_id, "after")
                outcome.append(None)
            except SessionBusy as exc:
                outcome.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(rename)
            await reached.wait()  # the rename has loaded the idle session
            stream_id = await rt.start_turn(s.session_id, "second")
            go.set()
        assert len(outcome) == 1 and isinstance(outcome[0], SessionBusy)
        live = await store.load(s.session_id)
        assert live.active_stream_id == stream_id
        assert live.pending_user_message == "second"
        release.set()
        await rt.wait_stream(stream_id)
        final = await rt.get_session(s.session_id)
    assert final.title == "before"
    assert [m["content"] for m in final.messages] == ["warm up", "answer", "second", "answer"]


async def test_rename_after_a_whole_turn_ran_meanwhile_keeps_the_turn() -> None:
    store = PausingStore()

    async def agent(turn: Turn) -> None:
        await turn.reply(f"answer to {turn.user_message}")

    async with Runtime(store, agent) as rt:
        s = await rt.create_session(title="before")
        await rt.wait_stream(await rt.start_turn(s.session_id, "first"))
        reached, go = anyio.Event(), anyio.Event()
        store.armed = (reached, go)
        async with anyio.create_task_group() as tg:
            tg.start_soon(rt.rename_session, s.session_id, "after")
            await reached.wait()  # the rename holds the 2-message state
            await rt.wait_stream(await rt.start_turn(s.session_id, "second"))
            go.set()
        final = await rt.get_session(s.session_id)
    assert final.title == "after"
    assert [m["content"] for m in final.messages] == [
        "first",
        "answer to first",
        "second",
        "answer to second",
    ]


@pytest.mark.parametrize("title", ["", "x" * 201, "bad\x00title"])
async def test_bad_titles_are_refused_before_any_write(title: str) -> None:
    store = MemoryStore()

    async def agent(turn: Turn) -> None:
        await turn.reply("ok")

    async with Runtime(store, agent) as rt:
        s = await rt.create_session(title="kept")
        await rt.wait_stream(await rt.start_turn(s.session_id, "hi"))
        before = (await store.load(s.session_id)).to_dict()
        with pytest.raises(ValueError, match="title"):
            await rt.rename_session(s.session_id, title)
        assert (await store.load(s.session_id)).to_dict() == before
