"""Runtime, Turn and the runner: DESIGN.md "Life of a turn" and "Stale stream repair"."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

import anyio
import pytest

from runtime import (
    Event,
    FileStore,
    InvalidSessionId,
    MemoryStore,
    MetadataOnlySaveError,
    Runtime,
    Session,
    SessionBusy,
    StoreError,
    StreamNotFound,
    Turn,
)

INTERVAL = 0.05


async def collect(rt: Runtime, stream_id: str, after_seq: int = 0) -> list[Event]:
    with anyio.fail_after(20):
        return [e async for e in rt.events(stream_id, after_seq)]


class SpyStore(MemoryStore):
    """A MemoryStore that records every save's flags and every load kind."""

    def __init__(self) -> None:
        super().__init__()
        self.saves: list[dict[str, Any]] = []
        self.loads: list[str] = []
        self.fail_load = False

    async def _write(
        self, session: Session, *, skip_index: bool, backup: bool, events: Sequence[Event]
    ) -> None:
        self.saves.append({"skip_index": skip_index, "messages": len(session.messages)})
        await super()._write(session, skip_index=skip_index, backup=backup, events=events)

    async def _load(self, session_id: str) -> Session:
        self.loads.append("full")
        if self.fail_load:
            raise StoreError("disk on fire")
        return await super()._load(session_id)

    async def _load_metadata(self, session_id: str) -> Session:
        self.loads.append("metadata")
        return await super()._load_metadata(session_id)


async def tool_agent(turn: Turn) -> None:
    await turn.token("Looking… ")
    for i in range(2):
        async with turn.tool("lookup", {"i": i}) as call:
            await anyio.sleep(INTERVAL * 3)
            call.result = {"i": i}
    await turn.reply("All done.")


async def test_event_order_and_gapless_seq() -> None:
    async with Runtime(MemoryStore(), tool_agent, checkpoint_interval=INTERVAL) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, "go")
        events = await collect(rt, stream_id)
    types = [e.type for e in events]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert types[0] == "stream.started"
    assert types[-2:] == ["done", "stream.end"]
    assert types.count("tool.started") == types.count("tool.completed") == 2
    assert {e.session_id for e in events} == {s.session_id}
    assert {e.stream_id for e in events} == {stream_id}
    assert "checkpoint" in types


async def test_transcript_has_user_tool_calls_results_and_reply() -> None:
    store = MemoryStore()
    async with Runtime(store, tool_agent, checkpoint_interval=INTERVAL) as rt:
        s = rt.new_session()
        await collect(rt, await rt.start_turn(s.session_id, "go"))
        full = await rt.get_session(s.session_id)
    roles = [m["role"] for m in full.messages]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert full.messages[0]["content"] == "go"
    assert full.messages[1]["content"] == "Looking… "
    call_id = full.messages[1]["tool_calls"][0]["id"]
    assert full.messages[2]["tool_call_id"] == call_id
    assert full.messages[-1]["content"] == "All done."
    assert full.active_stream_id is None and full.pending_user_message is None
    assert not any(m.get("_partial") for m in full.messages)


async def test_pending_fields_saved_before_agent_runs() -> None:
    store = SpyStore()
    seen: dict[str, Any] = {}

    async def agent(turn: Turn) -> None:
        stored = await store.load(turn.session_id)
        seen.update(active=stored.active_stream_id, pending=stored.pending_user_message)

    async with Runtime(store, agent) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, "hello")
        await collect(rt, stream_id)
    assert seen == {"active": stream_id, "pending": "hello"}
    assert store.saves[0]["skip_index"] is False  # the pending save is a full save
    assert store.saves[-1]["skip_index"] is False  # so is the final save


async def test_checkpoint_fires_on_activity_with_skip_index() -> None:
    store = SpyStore()
    async with Runtime(store, tool_agent, checkpoint_interval=INTERVAL) as rt:
        s = rt.new_session()
        events = await collect(rt, await rt.start_turn(s.session_id, "go"))
    checkpoints = [e for e in events if e.type == "checkpoint"]
    assert checkpoints
    middle = store.saves[1:-1]
    assert middle and all(save["skip_index"] for save in middle)
    assert len(middle) == len(checkpoints)


async def test_checkpoint_stays_quiet_without_activity() -> None:
    store = SpyStore()

    async def tokens_only(turn: Turn) -> None:
        for word in ("a ", "b ", "c"):
            await turn.token(word)
            await anyio.sleep(INTERVAL * 3)

    async with Runtime(store, tokens_only, checkpoint_interval=INTERVAL) as rt:
        s = rt.new_session()
        events = await collect(rt, await rt.start_turn(s.session_id, "go"))
    assert not [e for e in events if e.type == "checkpoint"]
    assert [save["skip_index"] for save in store.saves] == [False, False]


async def test_checkpoint_persists_streamed_partial_text() -> None:
    store = MemoryStore()
    reached = anyio.Event()
    release = anyio.Event()

    async def agent(turn: Turn) -> None:
        async with turn.tool("t") as call:
            call.result = "ok"
        await turn.token("half an ans")
        reached.set()
        await release.wait()
        await turn.reply("wer")

    async with Runtime(store, agent, checkpoint_interval=INTERVAL) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, "go")
        await reached.wait()
        with anyio.fail_after(5):
            while True:
                stored = await store.load(s.session_id)
                if stored.messages and stored.messages[-1].get("_partial"):
                    break
                await anyio.sleep(INTERVAL)
        assert stored.messages[-1]["content"] == "half an ans"
        assert stored.active_stream_id == stream_id
        release.set()
        await collect(rt, stream_id)
        final = await rt.get_session(s.session_id)
    assert final.messages[-1]["content"] == "half an answer"
    assert not any(m.get("_partial") for m in final.messages)


async def test_agent_error_keeps_user_message_and_partial_output() -> None:
    async def agent(turn: Turn) -> None:
        await turn.token("I was saying")
        raise RuntimeError("model unavailable")

    async with Runtime(MemoryStore(), agent) as rt:
        s = rt.new_session()
        events = await collect(rt, await rt.start_turn(s.session_id, "hi"))
        full = await rt.get_session(s.session_id)
    assert [e.type for e in events][-2:] == ["error", "stream.end"]
    assert events[-2].data["message"] == "model unavailable"
    assert full.messages[0] == {**full.messages[0], "role": "user", "content": "hi"}
    partial = [m for m in full.messages if m.get("_partial")]
    assert [m["content"] for m in partial] == ["I was saying"]
    errors = [m for m in full.messages if m.get("_error")]
    assert len(errors) == 1 and "model unavailable" in errors[0]["content"]
    assert full.active_stream_id is None


async def test_stop_event_set_when_agent_raises_before_checkpoint_task_starts() -> None:
    async def agent(turn: Turn) -> None:
        raise ValueError("at once")

    async with Runtime(MemoryStore(), agent, checkpoint_interval=3600) as rt:
        s = rt.new_session()
        with anyio.fail_after(5):  # a checkpoint loop that missed the stop event would hang
            events = await collect(rt, await rt.start_turn(s.session_id, "hi"))
    assert events[-2].type == "error"


async def test_cancel_keeps_partial_once_and_one_marker_and_allows_new_turn() -> None:
    started = anyio.Event()

    async def agent(turn: Turn) -> None:
        await turn.token("partial ")
        await turn.token("output")
        started.set()
        await anyio.sleep(60)

    async with Runtime(MemoryStore(), agent, checkpoint_interval=INTERVAL) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, "first")
        await started.wait()
        assert await rt.cancel(stream_id) is True
        events = await collect(rt, stream_id)
        assert [e.type for e in events][-2:] == ["cancelled", "stream.end"]
        second = await rt.start_turn(s.session_id, "second")  # no SessionBusy
        assert await rt.cancel(second) is True
        full = await rt.get_session(s.session_id)
        assert await rt.cancel(stream_id) is False
    first_turn = full.messages[
        : next(i for i, m in enumerate(full.messages) if m.get("content") == "second")
    ]
    partial = [m for m in first_turn if m.get("_partial")]
    assert [m["content"] for m in partial] == ["partial output"]
    assert len([m for m in first_turn if m.get("type") == "cancelled"]) == 1


async def test_cancel_inside_tool_records_the_tool_result() -> None:
    inside = anyio.Event()

    async def agent(turn: Turn) -> None:
        async with turn.tool("slow", {"n": 1}):
            inside.set()
            await anyio.sleep(60)

    async with Runtime(MemoryStore(), agent) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, "go")
        await inside.wait()
        await rt.cancel(stream_id)
        events = await collect(rt, stream_id)
        full = await rt.get_session(s.session_id)
    completed = [e for e in events if e.type == "tool.completed"]
    assert len(completed) == 1 and completed[0].data["error"] == "cancelled"
    call_id = next(m for m in full.messages if m.get("tool_calls"))["tool_calls"][0]["id"]
    assert any(m.get("tool_call_id") == call_id for m in full.messages)


async def test_session_busy_while_live() -> None:
    release = anyio.Event()

    async def agent(turn: Turn) -> None:
        await release.wait()

    async with Runtime(MemoryStore(), agent) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, "one")
        with pytest.raises(SessionBusy) as info:
            await rt.start_turn(s.session_id, "two")
        assert info.value.active_stream_id == stream_id
        with pytest.raises(SessionBusy):
            await rt.delete_session(s.session_id)
        status = await rt.session_status(s.session_id)
        assert status["live"] is True and status["pending_user_message"] == "one"
        release.set()
        await collect(rt, stream_id)
        assert (await rt.session_status(s.session_id))["live"] is False


async def test_bad_input_is_refused_before_anything_is_written() -> None:
    store = SpyStore()
    async with Runtime(store, tool_agent) as rt:
        s = rt.new_session()
        for text in ("", "   ", None, 42):
            with pytest.raises(ValueError, match="invalid message"):
                await rt.start_turn(s.session_id, text)  # type: ignore[arg-type]
        with pytest.raises(InvalidSessionId):
            await rt.start_turn("../../etc/passwd", "hi")
        with pytest.raises(StreamNotFound):
            rt.events("not-a-stream")
    assert store.saves == []


async def test_subscribers_replay_resume_and_leaving_does_not_cancel() -> None:
    async with Runtime(MemoryStore(), tool_agent, checkpoint_interval=INTERVAL) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, "go")
        async for event in rt.events(stream_id):  # a subscriber that leaves early
            if event.seq == 2:
                break
        a, b = await collect(rt, stream_id), await collect(rt, stream_id)
        tail = await collect(rt, stream_id, after_seq=3)
    assert [e.to_dict() for e in a] == [e.to_dict() for e in b]
    assert a[-2].type == "done"  # leaving did not cancel the turn
    assert [e.seq for e in tail] == [e.seq for e in a if e.seq > 3]


async def old_session(store: Any, *, age: float) -> Session:
    """A session as a crashed process leaves it: a stream set, a prompt pending."""
    s = store.new_session(title="crashed")
    s.messages.append({"role": "user", "content": "earlier"})
    s.messages.append({"role": "assistant", "content": "earlier answer"})
    s.active_stream_id = "0123456789abcdef." + s.session_id
    s.pending_user_message = "the lost prompt"
    s.pending_started_at = time.time() - age
    await store.save(s)
    return s


async def test_stale_stream_repaired_through_a_full_load() -> None:
    store = SpyStore()
    async with store:
        s = await old_session(store, age=120)
    updated_at = s.updated_at
    store._closed = False  # reuse the same in-memory data in a new runtime
    store._opened = False
    store.loads.clear()
    async with Runtime(store, tool_agent, stale_grace=30) as rt:
        meta = await rt.get_session(s.session_id, metadata_only=True)
        full = await rt.get_session(s.session_id)
    assert "full" in store.loads  # repaired through a full load
    assert meta.active_stream_id is None and meta.pending_user_message is None
    assert [m["content"] for m in full.messages[:2]] == ["earlier", "earlier answer"]
    recovered = full.messages[2]
    assert recovered["role"] == "user" and recovered["content"] == "the lost prompt"
    assert recovered["_recovered"] is True
    markers = [m for m in full.messages if m.get("type") == "interrupted"]
    assert len(markers) == 1 and markers[0]["_error"] is True
    assert markers[0]["interruption_cause"] == "process_restart"
    assert full.updated_at == updated_at


async def test_stale_repair_waits_for_the_grace_period_and_never_saves_metadata_only() -> None:
    store = SpyStore()
    async with store:
        s = await old_session(store, age=1)
        meta = await store.load_metadata(s.session_id)
        with pytest.raises(MetadataOnlySaveError):
            await store.save(meta)
    store._closed = store._opened = False
    async with Runtime(store, tool_agent, stale_grace=30) as rt:
        status = await rt.session_status(s.session_id)
        assert status["active_stream_id"] == s.active_stream_id and status["live"] is False
        with pytest.raises(SessionBusy):
            await rt.start_turn(s.session_id, "new")


async def test_failed_reload_writes_nothing() -> None:
    store = SpyStore()
    async with store:
        s = await old_session(store, age=120)
    store._closed = store._opened = False
    saves_before = len(store.saves)
    store.fail_load = True
    async with Runtime(store, tool_agent, stale_grace=30) as rt:
        with pytest.raises(StoreError):
            await rt.get_session(s.session_id, metadata_only=True)
    assert len(store.saves) == saves_before
    assert store.sessions[s.session_id].active_stream_id == s.active_stream_id


async def test_start_turn_on_stale_session_repairs_then_runs(tmp_path: Path) -> None:
    async with FileStore(tmp_path) as store:
        s = await old_session(store, age=120)
    async with Runtime(FileStore(tmp_path), tool_agent, checkpoint_interval=INTERVAL) as rt:
        await collect(rt, await rt.start_turn(s.session_id, "new question"))
        full = await rt.get_session(s.session_id)
    contents = [m.get("content") for m in full.messages]
    assert contents.count("the lost prompt") == 1 and contents.count("new question") == 1
    assert len([m for m in full.messages if m.get("type") == "interrupted"]) == 1


async def test_runtime_start_runs_recovery(tmp_path: Path) -> None:
    async with Runtime(FileStore(tmp_path), tool_agent) as rt:
        assert rt.recovery == {"scanned": 0, "restored": 0, "orphaned_backups": 0, "quarantined": 0}


async def test_dead_stream_replays_durable_events_then_interrupted(tmp_path: Path) -> None:
    """The files a crash leaves are taken by copying the store directory while the turn
    sleeps after its first checkpoint (the SIGKILL version is tests/test_crash.py)."""
    reached = anyio.Event()

    async def agent(turn: Turn) -> None:
        async with turn.tool("t") as call:
            call.result = 1
        reached.set()
        await anyio.sleep(60)

    live = []
    crashed = tmp_path / "crashed"
    async with Runtime(FileStore(tmp_path / "live"), agent, checkpoint_interval=INTERVAL) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, "go")
        async for event in rt.events(stream_id):
            live.append(event)
            if event.type == "checkpoint":
                break
        await anyio.to_thread.run_sync(
            lambda: shutil.copytree(
                tmp_path / "live", crashed, ignore=shutil.ignore_patterns("_lock")
            )
        )
        await rt.cancel(stream_id)
    async with Runtime(FileStore(crashed), agent, stale_grace=0) as rt2:
        replay = await collect(rt2, stream_id)
        full = await rt2.get_session(s.session_id)
    durable = replay[:-2]
    assert [e.seq for e in durable] == list(range(1, len(durable) + 1))
    # every event up to the one before the checkpoint was persisted by that checkpoint
    assert [e.to_dict() for e in durable] == [e.to_dict() for e in live[:-1]]
    assert [e.type for e in replay[-2:]] == ["error", "stream.end"]
    assert replay[-2].data["type"] == "interrupted"
    assert len([m for m in full.messages if m.get("type") == "interrupted"]) == 1
    assert full.active_stream_id is None


async def test_shutdown_gives_grace_then_cancels_keeping_partial_output(tmp_path: Path) -> None:
    async def agent(turn: Turn) -> None:
        await turn.token("still thinking")
        await anyio.sleep(60)

    async with Runtime(FileStore(tmp_path), agent, shutdown_grace=0.1) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, "go")
    async with Runtime(FileStore(tmp_path), agent) as rt:
        full = await rt.get_session(s.session_id)
        events = await collect(rt, stream_id)
    assert [m["content"] for m in full.messages if m.get("_partial")] == ["still thinking"]
    assert len([m for m in full.messages if m.get("type") == "cancelled"]) == 1
    assert [e.type for e in events][-2:] == ["cancelled", "stream.end"]


async def test_runtime_prunes_routes_in_background_never_sessions(tmp_path: Path) -> None:
    from datetime import datetime, timedelta

    from runtime.routing import RouteEntry, RouteTable

    table = RouteTable.for_root(tmp_path)
    old = datetime.now(UTC) - timedelta(days=200)
    async with Runtime(FileStore(tmp_path), tool_agent) as rt:
        s = rt.new_session()
        await collect(rt, await rt.start_turn(s.session_id, "go"))
    await table.put(
        RouteEntry(
            session_key="agent:main:telegram:dm:1",
            session_id=s.session_id,
            created_at=old,
            updated_at=old,
            platform="telegram",
            chat_type="dm",
            display_name="old",
            suspended=False,
        )
    )
    fresh = await table.get_or_create("agent:main:telegram:dm:2")
    async with Runtime(
        FileStore(tmp_path), tool_agent, route_table=table, route_prune_interval=3600
    ) as rt:
        with anyio.fail_after(5):
            while await table.get("agent:main:telegram:dm:1") is not None:
                await anyio.sleep(0.01)
        assert await table.get(fresh.session_key) is not None
        assert (await rt.get_session(s.session_id)).message_count > 0


@pytest.mark.parametrize("ending", ["cancel", "error", "shutdown"])
async def test_text_streamed_after_the_last_checkpoint_is_kept(ending: str, tmp_path: Path) -> None:
    """Once a checkpoint has saved the draft as a ``_partial`` message, every ending
    (cancel, agent error, shutdown) still keeps the text streamed after it."""
    store = FileStore(tmp_path)
    checkpointed, more_sent = anyio.Event(), anyio.Event()

    async def agent(turn: Turn) -> None:
        async with turn.tool("t") as call:  # activity, so a checkpoint fires
            call.result = "ok"
        await turn.token("Part one, ")
        await checkpointed.wait()
        await turn.token("part two.")
        more_sent.set()
        if ending == "error":
            raise RuntimeError("model went away")
        await anyio.sleep(60)

    async with Runtime(store, agent, checkpoint_interval=INTERVAL, shutdown_grace=0.01) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, "go")
        with anyio.fail_after(5):
            while not any(m.get("_partial") for m in (await store.load(s.session_id)).messages):
                await anyio.sleep(INTERVAL)
        checkpointed.set()
        await more_sent.wait()
        if ending == "cancel":
            await rt.cancel(stream_id)
        if ending != "shutdown":
            await rt.wait_stream(stream_id)
    async with FileStore(tmp_path) as reopened:
        final = await reopened.load(s.session_id)
    partial = [m for m in final.messages if m.get("_partial")]
    assert [m["content"] for m in partial] == ["Part one, part two."]
    assert final.active_stream_id is None


class _Opaque:
    pass


def _deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"role": "assistant", "content": _Opaque()}, "'content'"),
        ({"role": "assistant", "content": "x", "meta": {1: "int key"}}, "'meta'"),
        ({"role": "assistant", "content": "lone \ud800 surrogate"}, "'content'"),
        ({"role": "assistant", "content": _deep(100_000)}, "'content'"),
    ],
    ids=["object", "int-key", "lone-surrogate", "deep-nesting"],
)
async def test_add_message_refuses_what_json_cannot_carry_and_keeps_the_turn(
    message: dict[str, Any], field: str, tmp_path: Path
) -> None:
    """A message that cannot be encoded is refused at ``add_message`` (naming the
    field); everything else of the turn is saved and the turn ends ``done``."""
    caught: list[BaseException] = []

    async def agent(turn: Turn) -> None:
        async with turn.tool("t") as call:
            call.result = {"ok": True}
        try:
            await turn.add_message(message)
        except TypeError as exc:
            caught.append(exc)
        await turn.token("bad token \udfff?")  # refused too
        await turn.reply("still here")

    async with Runtime(FileStore(tmp_path), agent) as rt:
        s = rt.new_session()
        events = await collect(rt, await rt.start_turn(s.session_id, "go"))
        full = await rt.get_session(s.session_id)
    assert len(caught) == 1 and field in str(caught[0])
    assert [e.type for e in events][-2:] == ["error", "stream.end"]  # the bad token
    contents = [m.get("content") for m in full.messages]
    assert contents[0] == "go"
    assert '{"ok":true}' in contents
    assert not any(m.get("meta") for m in full.messages)


async def test_tool_results_json_cannot_carry_are_stored_as_text(tmp_path: Path) -> None:
    async def agent(turn: Turn) -> None:
        async with turn.tool("a") as call:
            call.result = {1: _Opaque()}
        async with turn.tool("b") as call:
            call.result = "lone \ud800"
        await turn.reply("done")

    async with Runtime(FileStore(tmp_path), agent) as rt:
        s = rt.new_session()
        events = await collect(rt, await rt.start_turn(s.session_id, "go"))
        full = await rt.get_session(s.session_id)
    assert events[-2].type == "done"
    tool_messages = [m for m in full.messages if m["role"] == "tool"]
    assert tool_messages[0]["content"].startswith('{"1":"<')
    assert tool_messages[1]["content"] == "lone \\ud800"


async def test_checkpoint_reports_the_messages_its_save_persisted() -> None:
    """The agent appends while a slow save runs; the ``checkpoint`` event counts only
    what that save wrote."""
    written: list[int] = []

    class SlowStore(MemoryStore):
        async def _write(
            self, session: Session, *, skip_index: bool, backup: bool, events: Sequence[Event]
        ) -> None:
            await super()._write(session, skip_index=skip_index, backup=backup, events=events)
            if skip_index:
                written.append(len(session.messages))
                await anyio.sleep(INTERVAL * 2)

    async def agent(turn: Turn) -> None:
        for i in range(30):
            await turn.add_message({"role": "assistant", "content": f"m{i}"})
            await anyio.sleep(INTERVAL / 5)

    async with Runtime(SlowStore(), agent, checkpoint_interval=INTERVAL) as rt:
        s = rt.new_session()
        events = await collect(rt, await rt.start_turn(s.session_id, "go"))
    reported = [e.data["messages"] for e in events if e.type == "checkpoint"]
    assert reported, "no checkpoint happened"
    assert reported == written[: len(reported)]


@pytest.mark.parametrize("days", ["30", None, float("nan"), True])
def test_route_max_age_days_is_checked_when_the_runtime_is_built(days: Any) -> None:
    with pytest.raises(ValueError, match="route_max_age_days"):
        Runtime(MemoryStore(), tool_agent, route_max_age_days=days)


async def test_an_agent_exception_is_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def agent(turn: Turn) -> None:
        raise KeyError("missing thing")

    async with Runtime(MemoryStore(), agent) as rt:
        s = rt.new_session()
        await collect(rt, await rt.start_turn(s.session_id, "go"))
    failures = [r for r in caplog.records if "agent failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None
    assert failures[0].exc_info[0] is KeyError


async def test_failing_checkpoints_are_announced_and_retried_with_backoff() -> None:
    """A store that fails every checkpoint: subscribers see ``checkpoint`` events with
    the error and the unchanged ``persisted_seq``; the final save still succeeds."""

    class FlakyStore(MemoryStore):
        async def _write(
            self, session: Session, *, skip_index: bool, backup: bool, events: Sequence[Event]
        ) -> None:
            if skip_index:
                raise StoreError("disk on fire")
            await super()._write(session, skip_index=skip_index, backup=backup, events=events)

    async def agent(turn: Turn) -> None:
        for i in range(12):
            async with turn.tool("t", {"i": i}) as call:
                call.result = i
            await anyio.sleep(INTERVAL)
        await turn.reply("done")

    async with Runtime(FlakyStore(), agent, checkpoint_interval=INTERVAL) as rt:
        s = rt.new_session()
        events = await collect(rt, await rt.start_turn(s.session_id, "go"))
        full = await rt.get_session(s.session_id)
    failed = [e.data for e in events if e.type == "checkpoint"]
    assert failed, "a failing checkpoint was never announced"
    assert all("disk on fire" in d["error"] and d["persisted_seq"] == 1 for d in failed)
    assert [d["failures"] for d in failed] == list(range(1, len(failed) + 1))
    assert [d["retry_in_s"] for d in failed][:2] == [INTERVAL * 2, INTERVAL * 4]
    assert len(failed) < 12, "retries did not back off"
    assert events[-2].type == "done" and full.messages[-1]["content"] == "done"
