"""The runtime-wide timer the checkpoint coroutines sleep on (docs/architecture.md,
"Checkpoint timer"): one entry per sleeping turn, woken at the interval or at once by the
turn's stop event, and nothing left behind by turns that ended."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio

from runtime import Event, MemoryStore, Runtime, Session, StoreError, Turn

INTERVAL = 0.2


async def wait_for(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate()`` until true (other tasks reach the state waited for);
    fails after 20 s naming ``what``."""
    try:
        with anyio.fail_after(20):
            while not predicate():
                await anyio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"not reached in 20 s: {what}") from None


async def test_every_sleeping_turn_has_one_timer_entry_and_is_checkpointed() -> None:
    gate = anyio.Event()

    async def agent(turn: Turn) -> None:
        await turn.token(f"text of {turn.session_id}")
        await gate.wait()
        await turn.reply("done")

    turns = 100
    async with Runtime(MemoryStore(), agent, checkpoint_interval=INTERVAL) as rt:
        sessions = [rt.new_session() for _ in range(turns)]
        streams = [await rt.start_turn(s.session_id, "hi") for s in sessions]
        assert rt.statistics()["live_streams"] == turns

        async def all_checkpointed() -> bool:
            for s in sessions:
                if not any(m.get("_partial") for m in await _saved(rt, s.session_id)):
                    return False
            return True

        # the streamed text is progress: each turn's coroutine wakes and saves it
        with anyio.fail_after(20):
            while not await all_checkpointed():
                await anyio.sleep(INTERVAL)
        # between ticks, each live turn sleeps on one entry of the shared timer
        await wait_for(lambda: rt.statistics()["timer_entries"] == turns, "one entry per turn")
        gate.set()
        with anyio.fail_after(20):
            for stream_id in streams:
                await rt.wait_stream(stream_id)
        # entries of the ended turns go once due: nothing outlives an interval
        await wait_for(lambda: rt.statistics()["timer_entries"] == 0, "entries dropped")
        for s in sessions:
            saved = await _saved(rt, s.session_id)
            assert [m["role"] for m in saved] == ["user", "assistant"]


async def _saved(rt: Runtime, session_id: str) -> list[dict[str, object]]:
    return list((await rt.get_session(session_id)).messages)


async def test_turns_ending_before_a_long_interval_leave_few_timer_entries() -> None:
    """With an hour-long interval, every turn ends long before its wake-up is due: its
    stop event ends the sleep at once, and the stale entries are dropped in bulk once
    they are over half of the timer, instead of lingering for an hour each."""

    async def agent(turn: Turn) -> None:
        await turn.reply("quick")

    turns = 300
    async with Runtime(MemoryStore(), agent, checkpoint_interval=3600) as rt:
        with anyio.fail_after(30):  # a coroutine that missed its stop event would hang
            for _ in range(turns):
                s = rt.new_session()
                await rt.wait_stream(await rt.start_turn(s.session_id, "hi"))
        entries = rt.statistics()["timer_entries"]
        assert rt.statistics()["live_streams"] == 0
        assert entries < turns // 2, f"{entries} stale timer entries after {turns} turns"


async def test_cancel_during_the_sleep_ends_the_turn_and_keeps_the_timer_consistent() -> None:
    started = anyio.Event()

    async def agent(turn: Turn) -> None:
        await turn.token("partial")
        started.set()
        await anyio.sleep(3600)

    async with Runtime(MemoryStore(), agent, checkpoint_interval=INTERVAL) as rt:
        first = rt.new_session()
        stream_id = await rt.start_turn(first.session_id, "hi")
        with anyio.fail_after(20):
            await started.wait()
        await wait_for(lambda: rt.statistics()["timer_entries"] >= 1, "the turn sleeps")
        assert await rt.cancel(stream_id)
        with anyio.fail_after(20):
            await rt.wait_stream(stream_id)
        # the timer still serves the next turn: its checkpoint happens
        started = anyio.Event()
        second = rt.new_session()
        other = await rt.start_turn(second.session_id, "again")
        with anyio.fail_after(20):
            await started.wait()
            while not any(
                m.get("_partial") for m in (await rt.get_session(second.session_id)).messages
            ):
                await anyio.sleep(INTERVAL)
        assert await rt.cancel(other)
        with anyio.fail_after(20):
            await rt.wait_stream(other)
        for s in (first, second):
            saved = await _saved(rt, s.session_id)
            assert sum(1 for m in saved if m.get("_partial")) == 1


async def test_sleeps_of_several_lengths_share_the_timer() -> None:
    """A turn whose checkpoints fail sleeps 2, 4, 8... intervals between retries while
    the others sleep one: the sleeps of every length wake (the healthy turns keep being
    checkpointed, the failing one keeps retrying at its backoff), and every entry goes
    once the turns end."""

    class OneSessionFails(MemoryStore):
        failing = ""

        async def _write(
            self, session: Session, *, skip_index: bool, backup: bool, events: Sequence[Event]
        ) -> None:
            if skip_index and session.session_id == self.failing:
                raise StoreError("disk on fire")
            await super()._write(session, skip_index=skip_index, backup=backup, events=events)

    gate = anyio.Event()

    async def agent(turn: Turn) -> None:
        while not gate.is_set():  # progress at every tick, so every tick saves
            await turn.token("x")
            await anyio.sleep(INTERVAL / 4)
        await turn.reply("done")

    store = OneSessionFails()
    async with Runtime(store, agent, checkpoint_interval=INTERVAL) as rt:
        sessions = [rt.new_session() for _ in range(4)]
        store.failing = sessions[0].session_id
        streams = [await rt.start_turn(s.session_id, "go") for s in sessions]
        seen: dict[str, list[dict[str, object]]] = {sid: [] for sid in streams}

        async def follow(stream_id: str) -> None:
            async for ev in rt.events(stream_id):
                if ev.type == "checkpoint":
                    seen[stream_id].append(dict(ev.data))

        def enough() -> bool:
            retries = [d["retry_in_s"] for d in seen[streams[0]]]
            healthy = [sum("error" not in d for d in seen[sid]) for sid in streams[1:]]
            return retries[:3] == [2 * INTERVAL, 4 * INTERVAL, 8 * INTERVAL] and min(
                healthy
            ) >= 3 * len(retries)

        async with anyio.create_task_group() as tg:
            for stream_id in streams:
                tg.start_soon(follow, stream_id)
            await wait_for(enough, "three backed-off retries beside healthy checkpoints")
            gate.set()
        await wait_for(lambda: rt.statistics()["timer_entries"] == 0, "entries dropped")
    assert all("error" in d for d in seen[streams[0]])
