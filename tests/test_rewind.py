"""``start_turn(rewind_to=...)``: a chat UI's regenerate and edit rewrite the history on
purpose, and the rewrite survives a restart (no backup for ``recover()`` to restore)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from runtime import FileStore, HistoryMismatch, MemoryStore, Runtime, SessionBusy, Turn

INTERVAL = 0.05


async def tool_agent(turn: Turn) -> None:
    """Three messages per turn (tool call, tool result, reply), so a regenerate that
    answers with one message shrinks the list below its backup's length."""
    async with turn.tool("lookup", {"q": turn.user_message}) as call:
        await anyio.sleep(INTERVAL * 2)
        call.result = {"found": turn.user_message}
    await turn.reply(f"answer to {turn.user_message}")


async def short_agent(turn: Turn) -> None:
    """One message per turn; what it saw of the history is in the reply."""
    await turn.token(f"seen {len(turn.history)}: ")
    await turn.reply(f"again {turn.user_message}")


async def _turn(rt: Runtime, session_id: str, text: str, **kw: object) -> None:
    with anyio.fail_after(20):
        stream_id = await rt.start_turn(session_id, text, **kw)  # type: ignore[arg-type]
        await rt.wait_stream(stream_id)


async def test_regenerate_replaces_the_reply_and_survives_recover(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    async with Runtime(FileStore(root), tool_agent, checkpoint_interval=INTERVAL) as rt:
        s = await rt.create_session(title="rewind")
        await _turn(rt, s.session_id, "first")
        await _turn(rt, s.session_id, "second")
        before = (await rt.get_session(s.session_id)).messages
        assert [m["role"] for m in before] == ["user", "assistant", "tool", "assistant"] * 2
    async with Runtime(FileStore(root), short_agent, checkpoint_interval=INTERVAL) as rt:
        # regenerate the second answer: back to before its user message, then ask again
        await _turn(rt, s.session_id, "second", rewind_to=4)
        after = (await rt.get_session(s.session_id)).messages
    assert after[:4] == before[:4]
    assert [(m["role"], m["content"]) for m in after[4:]] == [
        ("user", "second"),
        ("assistant", "seen 4: again second"),
    ]
    # a restart runs recover(): the 8-message state must not come back over the 6
    async with FileStore(root) as store:
        report = await store.recover()
        assert report["restored"] == 0
        assert (await store.load(s.session_id)).messages == after


async def test_edit_of_the_first_message_drops_everything_after_it() -> None:
    store = MemoryStore()
    async with Runtime(store, tool_agent, checkpoint_interval=INTERVAL) as rt:
        s = await rt.create_session(title="edit")
        await _turn(rt, s.session_id, "first")
        await _turn(rt, s.session_id, "edited", rewind_to=0)
        after = (await rt.get_session(s.session_id)).messages
        assert s.session_id not in store.backups
        assert dict(await store.recover())["restored"] == 0
    assert [m["role"] for m in after] == ["user", "assistant", "tool", "assistant"]
    assert after[0]["content"] == "edited"
    assert after[-1]["content"] == "answer to edited"


async def test_bad_rewind_to_is_refused_and_writes_nothing() -> None:
    store = MemoryStore()
    async with Runtime(store, short_agent, checkpoint_interval=INTERVAL) as rt:
        s = await rt.create_session(title="bad")
        await _turn(rt, s.session_id, "first")
        stored = (await rt.get_session(s.session_id)).to_dict()
        for bad in (-1, True, 1.5, "2"):
            with pytest.raises(ValueError, match="invalid rewind_to"):
                await rt.start_turn(s.session_id, "x", rewind_to=bad)  # type: ignore[arg-type]
        with pytest.raises(HistoryMismatch, match="the session has 2 messages"):
            await rt.start_turn(s.session_id, "x", rewind_to=3)
        assert (await rt.get_session(s.session_id)).to_dict() == stored
        # the refused starts left the session free for the next turn
        await _turn(rt, s.session_id, "second", rewind_to=2)
        assert len((await rt.get_session(s.session_id)).messages) == 4


async def test_rewind_while_a_turn_runs_is_busy_and_drops_nothing() -> None:
    release = anyio.Event()

    async def slow_agent(turn: Turn) -> None:
        await release.wait()
        await turn.reply("late")

    async with Runtime(MemoryStore(), slow_agent, checkpoint_interval=INTERVAL) as rt:
        s = await rt.create_session(title="busy")
        stream_id = await rt.start_turn(s.session_id, "first")
        with pytest.raises(SessionBusy):
            await rt.start_turn(s.session_id, "other", rewind_to=0)
        release.set()
        await rt.wait_stream(stream_id)
        messages = (await rt.get_session(s.session_id)).messages
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "first"),
        ("assistant", "late"),
    ]
