"""The in-process event log (runtime.brokers.memory): seq numbering, the hot window of
Event objects and the columns behind it, the retained window, waking subscribers, and
MemoryBroker's retention of finished streams."""

from __future__ import annotations

import time

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import StreamNotFound, SubscriberLagged
from runtime.brokers.memory import EventLog, MemoryBroker


def _publish(log: EventLog, n: int) -> None:
    for i in range(n):
        log.publish("token", {"text": f"t{log.last_seq + 1}", "i": i, "nested": [i]})


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(0, 300),
    hot=st.integers(1, 20),
    max_events=st.integers(1, 120),
    after=st.integers(0, 320),
    span=st.integers(0, 320),
)
def test_reads_match_a_plain_list_model(
    n: int, hot: int, max_events: int, after: int, span: int
) -> None:
    """Whatever part of the window is held as objects or as columns, reads give back
    exactly the retained events, equal to what was published, with gap-free seqs."""
    log = EventLog("st", "se", max_events=max_events, hot_events=hot)
    published = [log.publish("token", {"text": f"t{i}", "n": [i]}) for i in range(n)]
    assert log.last_seq == n
    assert len(log) <= max_events
    first = log.first_retained_seq
    retained = published[first - 1 :]
    assert len(log) == len(retained)
    if after < first - 1:
        with pytest.raises(SubscriberLagged):
            log.read_nowait(after)
    else:
        assert log.read_nowait(after) == [e for e in retained if e.seq > after]
    up_to = after + span
    assert log.events_between(after, up_to) == [e for e in retained if after < e.seq <= up_to]


def test_rebuilt_events_keep_every_field() -> None:
    """An event read back from the columns is equal field by field (ids, type, data,
    ts) and its JSON is the same as the original's."""
    log = EventLog("stream-a", "session-a", hot_events=2)
    originals = [log.publish("tool.completed", {"id": "c1", "result": 'a "b"\nc'})]
    _publish(log, 10)
    rebuilt = log.read_nowait(0)[0]
    assert rebuilt is not originals[0]  # it came from the columns
    assert rebuilt == originals[0]
    assert (rebuilt.stream_id, rebuilt.session_id, rebuilt.ts) == (
        "stream-a",
        "session-a",
        originals[0].ts,
    )
    assert rebuilt.json() == originals[0].json()


def test_recent_events_are_the_published_objects() -> None:
    """A subscriber that keeps up gets the very objects published (no copies)."""
    log = EventLog("st", "se", hot_events=4)
    _publish(log, 20)
    last = log.publish("token", {"text": "x"})
    assert log.read_nowait(20)[0] is last


def test_data_that_is_not_json_is_refused_and_nothing_is_appended() -> None:
    log = EventLog("st", "se")
    _publish(log, 2)
    with pytest.raises(TypeError, match=r"'tool\.completed' event 3 of stream 'st'.*JSON"):
        log.publish("tool.completed", {"result": object()})
    assert log.last_seq == 2
    assert log.publish("token", {"text": "ok"}).seq == 3


def test_append_refuses_a_gap_or_a_repeat() -> None:
    log = EventLog("st", "se")
    e1 = log.publish("token", {"text": "a"})
    with pytest.raises(ValueError, match="does not follow 1"):
        log.append(e1)
    assert log.last_seq == 1


def test_no_publish_after_stream_end() -> None:
    log = EventLog("st", "se")
    log.publish("stream.end", {})
    assert log.closed
    with pytest.raises(RuntimeError, match="has ended"):
        log.publish("token", {"text": "late"})


@pytest.mark.parametrize(("kw", "value"), [("max_events", 0), ("hot_events", 0)])
def test_window_sizes_are_validated(kw: str, value: int) -> None:
    with pytest.raises(ValueError, match=f"invalid {kw} 0"):
        EventLog("st", "se", **{kw: value})


async def test_a_waiting_reader_wakes_with_the_whole_batch() -> None:
    """Batch delivery: a reader woken once takes every event published meanwhile."""
    log = EventLog("st", "se", hot_events=2)
    batches: list[list[int]] = []

    async def read_all() -> None:
        after = 0
        while batch := await log.read(after):
            batches.append([e.seq for e in batch])
            after = batch[-1].seq

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_all)
        await anyio.wait_all_tasks_blocked()
        _publish(log, 9)  # no await between: one wake-up
        log.publish("stream.end", {})
    assert batches == [list(range(1, 11))]


async def test_broker_keeps_finished_streams_for_the_retention_only() -> None:
    broker = MemoryBroker(retention=0.05)
    log = broker.open("s1", "se")
    with pytest.raises(ValueError, match="already exists"):
        broker.open("s1", "se")
    log.publish("stream.end", {})
    assert broker.get("s1") is log
    await anyio.sleep(0.1)
    with pytest.raises(StreamNotFound):
        broker.get("s1")
    broker.open("s2", "se")  # opening expires what is due
    assert len(broker) == 1
    assert time.monotonic() - (log.finished_at or 0) > 0.05


async def test_expiry_forgets_finished_logs_only_in_finishing_order() -> None:
    """Expiry pops finished logs oldest first; live logs, and a log that replaced a
    dropped one under the same id, stay."""
    broker = MemoryBroker(retention=0.05)
    a, b, c = (broker.open(sid, "se") for sid in ("a", "b", "c"))
    c.publish("stream.end", {})
    a.publish("stream.end", {})
    broker.drop("c")
    c2 = broker.open("c", "se")  # same id, a new live stream
    await anyio.sleep(0.1)
    assert broker.expire() == 1  # only "a": "c" was dropped already, "b" is live
    assert broker.get("b") is b
    assert broker.get("c") is c2
    with pytest.raises(StreamNotFound):
        broker.get("a")
    b.publish("stream.end", {})
    assert broker.expire() == 0  # b finished just now: still retained
    assert broker.get("b") is b


def test_readers_at_one_position_share_the_published_objects() -> None:
    """Delivered events move to the columns only at the next publish, so every reader
    woken by one publish gets the very objects (1,000 SSE subscribers, W5), and older
    ones are rebuilt equal for a reader that comes late."""
    log = EventLog("st", "se")
    published = [log.publish("token", {"text": str(i)}) for i in range(5)]
    first = log.read_nowait(0)
    assert log.read_nowait(5) == []  # reader A is done with them
    second = log.read_nowait(0)  # reader B, woken by the same publish
    assert all(a is b for a, b in zip(first, second, strict=True))
    assert all(a is p for a, p in zip(first, published, strict=True))
    log.publish("token", {"text": "next"})
    late = log.read_nowait(0)  # now columns: rebuilt, equal
    assert late[:5] == published
    assert late[0] is not published[0]


async def test_reads_cancelled_on_a_silent_stream_leave_nothing_behind() -> None:
    """Subscribers that give up waiting (SSE clients reconnecting while the agent thinks)
    leave no waiter objects piling up until the next publish, and the next read is
    still woken by it."""
    import asyncio
    import gc

    log = EventLog("silent", "session")
    _publish(log, 1)

    def futures() -> int:
        return sum(1 for o in gc.get_objects() if isinstance(o, asyncio.Future))

    before = futures()
    for _ in range(1000):
        with anyio.move_on_after(0):  # cancelled at its first wait
            await log.read(1)
    gc.collect()
    assert futures() - before < 32, "cancelled reads left their waiters behind"
    got: list[int] = []

    async def reader() -> None:
        got.extend(e.seq for e in await log.read(1))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        await anyio.sleep(0.01)
        _publish(log, 1)
    assert got == [2]


def test_records_between_hold_the_events_between() -> None:
    """``records_between`` (what a save writes: a run of tokens as one record) expands to
    exactly ``events_between`` from every position, across the log's columns (delivered
    events) and its newest events, with runs broken by other events and types."""
    from runtime._events import events_from_records

    log = EventLog("s", "x", hot_events=4)
    for i in range(1, 41):
        if i % 13 == 0:
            log.publish("tool.started", {"call_id": str(i), "name": "t", "arguments": {}})
        elif 20 <= i < 24:
            log.publish("reasoning", {"text": f"r{i}"})
        else:
            log.publish("token", {"text": f"t{i}"})
        if i % 7 == 0:
            log.read_nowait(i)  # delivered: moved to the columns at the next publish
    for after in range(41):
        for up_to in range(after, 42):
            records = log.records_between(after, up_to)
            got = events_from_records(records)
            assert got == log.events_between(after, up_to), (after, up_to)
    # tokens 1-12 are one run, split where the columns end and the newest events begin
    assert len(log.records_between(0, 12)) <= 2


async def test_readers_waiting_together_each_get_the_batch_even_if_the_first_leaves() -> None:
    """Three readers wait at one position: the first reads for all, the others get
    their own list of the same events; if the first leaves before the publish, the
    others read for themselves and still get every event once."""
    log = EventLog("st", "se")
    _publish(log, 1)
    got: dict[str, list[int]] = {}
    lists: list[list[object]] = []

    async def reader(name: str) -> None:
        batch = await log.read(1)
        lists.append(batch)
        got[name] = [e.seq for e in batch]

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader, "a")
        await anyio.sleep(0.01)  # "a" waits first: it reads for the others
        tg.start_soon(reader, "b")
        tg.start_soon(reader, "c")
        await anyio.sleep(0.01)
        _publish(log, 2)
    assert got == {"a": [2, 3], "b": [2, 3], "c": [2, 3]}
    assert len({id(batch) for batch in lists}) == 3  # each caller its own list

    # a first reader cancelled while others wait for its read
    async def stays(name: str) -> None:
        got[name] = [e.seq for e in await log.read(3)]

    got.clear()
    async with anyio.create_task_group() as tg:
        async with anyio.create_task_group() as leaving:
            leaving.start_soon(stays, "leaver")
            await anyio.sleep(0.01)
            tg.start_soon(stays, "d")
            tg.start_soon(stays, "e")
            await anyio.sleep(0.01)
            leaving.cancel_scope.cancel()
        await anyio.sleep(0.01)
        _publish(log, 1)
    assert got == {"d": [4], "e": [4]}
