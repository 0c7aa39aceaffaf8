"""The runner's checkpoints tell the store what changed (``SaveDelta``), and what a
FileStore journals from those deltas is what the turn holds, read back from disk at
every step of a turn: a streamed reply materialised and growing in place, a tool-call
message joining its group, a new title, the final save."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Any

import anyio

from runtime import Event, FileStore, Runtime, SaveDelta, Session, Turn, WriteConflict


class RecordingFileStore(FileStore):
    """A FileStore that records the delta of every save and announces each checkpoint
    (``skip_index``) save once it is durable."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.saves: list[tuple[bool, SaveDelta | None, int]] = []
        self.checkpointed = anyio.Event()

    async def save(self, session: Session, **kwargs: Any) -> None:
        count = len(session.messages)
        await super().save(session, **kwargs)
        skip = bool(kwargs.get("skip_index"))
        self.saves.append((skip, kwargs.get("delta"), count))
        if skip:
            self.checkpointed.set()
            self.checkpointed = anyio.Event()


async def collect(rt: Runtime, stream_id: str) -> list[Event]:
    with anyio.fail_after(20):
        return [e async for e in rt.events(stream_id)]


async def test_checkpoint_deltas_journal_what_the_turn_holds(tmp_path: Path) -> None:
    store = RecordingFileStore(tmp_path)
    seen: list[list[dict[str, Any]]] = []

    async def on_disk(turn: Turn) -> None:
        """Wait for the next checkpoint, then read the session back from the files."""
        await store.checkpointed.wait()
        async with FileStore(tmp_path, read_only=True) as reader:
            seen.append((await reader.load(turn.session_id)).messages)

    async def agent(turn: Turn) -> None:
        await turn.token("Hel")
        await on_disk(turn)  # the draft materialised as a _partial message
        await turn.token("lo")
        await on_disk(turn)  # that message grew in place
        async with turn.tool("grep", {"q": "x"}) as call:
            await on_disk(turn)  # the draft finished as the tool-call message
            async with turn.tool("wc", {"q": "y"}) as second:
                await on_disk(turn)  # a second call joined the group: same message
                second.result = 2
            call.result = 1
        await turn.set_title("named")
        await turn.add_message({"role": "assistant", "content": "after the tools"})
        await on_disk(turn)  # tool results and the new message appended; the title
        await turn.add_message({"role": "assistant", "content": "one more"})
        await on_disk(turn)  # appended only: the last stored message was finished
        await turn.reply("done")

    async with Runtime(store, agent, checkpoint_interval=0.01) as rt:
        s = rt.new_session()
        events = await collect(rt, await rt.start_turn(s.session_id, "go"))
    assert events[-2].type == "done"

    assert [m.get("content") for m in seen[0][-2:]] == ["go", "Hel"]
    assert seen[0][-1]["_partial"] is True
    assert [m.get("content") for m in seen[1][-2:]] == ["go", "Hello"]
    assert "_partial" not in seen[2][-1] and len(seen[2][-1]["tool_calls"]) == 1
    assert seen[2][-1]["content"] == "Hello" and len(seen[2]) == len(seen[1])
    assert [c["function"]["name"] for c in seen[3][-1]["tool_calls"]] == ["grep", "wc"]
    assert [m["role"] for m in seen[4][-4:]] == ["assistant", "tool", "tool", "assistant"]

    checkpoints = [(delta, count) for skip, delta, count in store.saves if skip]
    # the runner knows what is stored from the turn's claim on: the first checkpoint
    # writes what came after the messages the claim saved (none: a new session)
    assert checkpoints[0][0] == SaveDelta(0, 0)
    assert all(delta is not None for delta, _ in checkpoints)
    for (_, before), (delta, _) in pairwise(checkpoints):
        assert delta is not None and delta.base == before
    kinds = {(d.base - d.keep) for d, _ in checkpoints[1:] if d is not None}
    assert kinds == {0, 1}, "appends and in-place changes of the last message"
    assert any(d is not None and "title" in d.fields for d, _ in checkpoints)

    final_skip, final_delta, _ = store.saves[-1]
    assert not final_skip and final_delta is not None
    assert {"active_stream_id", "pending_user_message"} <= final_delta.fields

    async with FileStore(tmp_path) as again:
        loaded = await again.load(s.session_id)
    assert loaded.title == "named" and loaded.active_stream_id is None
    assert [m.get("content") for m in seen[5][-2:]] == ["after the tools", "one more"]
    assert [m.get("content") for m in loaded.messages][-3:] == [
        "after the tools",
        "one more",
        "done",
    ]


class PausingFileStore(FileStore):
    """A FileStore whose next checkpoint save, once armed, announces that it started and
    waits before it writes (as a save waits for the store's lock while the tool ledger
    writes); records every save's delta and whether the store refused it."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.armed: tuple[anyio.Event, anyio.Event] | None = None
        self.saves: list[tuple[SaveDelta | None, str]] = []

    async def save(self, session: Session, **kwargs: Any) -> None:
        if self.armed is not None and kwargs.get("skip_index"):
            reached, go = self.armed
            self.armed = None
            reached.set()
            await go.wait()
        try:
            await super().save(session, **kwargs)
        except WriteConflict as exc:
            self.saves.append((kwargs.get("delta"), f"refused, the store holds {exc.stored_count}"))
            raise
        self.saves.append((kwargs.get("delta"), "saved"))


async def test_messages_appended_while_a_checkpoint_waited_do_not_cost_a_full_save(
    tmp_path: Path,
) -> None:
    """A checkpoint counts the messages when it calls the store; one that waits there
    while the agent finishes a tool call writes those messages too. The next delta,
    counted from the lower figure, is refused; the runner then makes it again against
    the count the store holds, never falling back to a save without a delta (which
    rewrites the whole history on a shared store). What is on disk is the turn."""
    store = PausingFileStore(tmp_path)

    async def agent(turn: Turn) -> None:
        async with turn.tool("first", {}) as call:
            call.result = 1
        reached, go = anyio.Event(), anyio.Event()
        store.armed = (reached, go)
        await reached.wait()  # a checkpoint has counted 3 messages and waits
        async with turn.tool("second", {}) as call:
            call.result = 2
        go.set()
        await anyio.sleep(0.1)  # that checkpoint writes 5; the next ones come after it
        await turn.reply("done")

    async with Runtime(store, agent, checkpoint_interval=0.01) as rt:
        session = await rt.create_session()
        stream_id = await rt.start_turn(session.session_id, "go")
        await collect(rt, stream_id)
    refused = [i for i, (_, what) in enumerate(store.saves) if what.startswith("refused")]
    assert refused, store.saves  # the race happened
    for i in refused:
        again, outcome = store.saves[i + 1]
        assert again is not None and outcome == "saved", store.saves
        assert f"holds {again.base}" in store.saves[i][1]
    assert all(delta is not None for delta, _ in store.saves[1:]), store.saves
    async with FileStore(tmp_path, read_only=True) as reader:
        stored = (await reader.load(session.session_id)).messages
    assert [m["role"] for m in stored] == ["user", *["assistant", "tool"] * 2, "assistant"]
    assert stored[-1]["content"] == "done"
