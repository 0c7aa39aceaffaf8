"""``Subscription.next_batch()`` / ``batches()`` (runtime/_subscription.py), the batch API
the SSE endpoint sends from, and the endpoint's one-chunk-per-batch delivery with shared
encodings (``BatchEncoder``, runtime/_http/_sse.py).

Most tests drive a real :class:`MemoryBroker` event log and a real :class:`MemoryStore`
directly, so that what is available when a subscriber wakes is decided by the test, not
by scheduling.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from sse_helpers import drive_asgi_get, events_of, open_app

from runtime import Event, MemoryStore, Session, StreamNotFound, SubscriberLagged
from runtime._events import encode_sse
from runtime._http._sse import CHUNK_BYTES, CHUNK_EVENTS, BatchEncoder
from runtime._subscription import Subscription
from runtime.brokers.memory import EventLog, MemoryBroker
from runtime.testing import Notify, Reply, WaitFor, scripted_agent

SID = "batchsession"
STREAM = f"{'a' * 16}.{SID}"


async def fresh() -> tuple[MemoryBroker, MemoryStore, EventLog]:
    store = MemoryStore()
    await store.open()
    broker = MemoryBroker()
    return broker, store, broker.open(STREAM, SID)


def publish_tokens(log: EventLog, n: int) -> list[Event]:
    return [log.publish("token", {"text": f"t{i}"}) for i in range(n)]


def seqs(events: list[Event]) -> list[int]:
    return [e.seq for e in events]


async def test_a_batch_is_every_available_event_in_order() -> None:
    broker, store, log = await fresh()
    published = publish_tokens(log, 5)
    sub = Subscription(broker, store, STREAM, 0)
    batch = await sub.next_batch()
    assert batch == published  # all five at once, in seq order
    assert sub.last_seq == 5
    published += publish_tokens(log, 3)
    assert seqs(await sub.next_batch()) == [6, 7, 8]


async def test_batches_deliver_each_event_once_and_end_after_stream_end() -> None:
    broker, store, log = await fresh()
    sub = Subscription(broker, store, STREAM, 0)
    got: list[list[Event]] = []

    async def produce() -> None:
        for burst in (3, 1, 4):
            publish_tokens(log, burst)
            await anyio.wait_all_tasks_blocked()  # the subscriber takes the burst
        log.publish("done", {})
        log.publish("stream.end", {})

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        with anyio.fail_after(10):
            async for batch in sub.batches():
                got.append(batch)
    flat = [e for b in got for e in b]
    assert seqs(flat) == list(range(1, 11))
    assert all(got), "batches are never empty"
    assert [len(b) for b in got] == [3, 1, 4, 2]
    assert flat[-1].type == "stream.end"
    assert await sub.next_batch() == []  # stays ended
    assert sub.last_seq == 10


async def test_resume_after_a_seq_gets_exactly_the_rest() -> None:
    broker, store, log = await fresh()
    publish_tokens(log, 6)
    log.publish("stream.end", {})
    for after in range(8):
        sub = Subscription(broker, store, STREAM, after)
        flat = [e async for b in sub.batches() for e in b]
        assert seqs(flat) == list(range(after + 1, 8))


async def test_per_event_and_batch_iteration_mix_without_duplicates() -> None:
    broker, store, log = await fresh()
    publish_tokens(log, 4)
    sub = Subscription(broker, store, STREAM, 0)
    first = await anext(sub)
    assert first.seq == 1 and sub.last_seq == 1
    assert seqs(await sub.next_batch()) == [2, 3, 4]  # the rest of the fetched batch
    publish_tokens(log, 2)
    log.publish("stream.end", {})
    assert (await anext(sub)).seq == 5
    assert seqs(await sub.next_batch()) == [6, 7]
    with pytest.raises(StopAsyncIteration):
        await anext(sub)
    assert await sub.next_batch() == []


async def test_unknown_stream_raises_from_next_batch() -> None:
    broker, store, _ = await fresh()
    sub = Subscription(broker, store, f"{'b' * 16}.{SID}", 0)
    with pytest.raises(StreamNotFound):
        await sub.next_batch()


async def test_lagged_subscriber_gets_the_gap_from_the_store_then_the_live_log() -> None:
    """The live window (8 events) dropped what the subscriber missed; the store holds
    those events (persisted by a checkpoint), so the gap is filled in order."""
    store = MemoryStore()
    await store.open()
    broker = MemoryBroker(max_events=8)
    log = broker.open(STREAM, SID)
    events = publish_tokens(log, 30)
    assert log.first_retained_seq > 3
    await store.save(Session(SID), events=events[:25])
    sub = Subscription(broker, store, STREAM, 2)
    gap = await sub.next_batch()
    assert gap[0].seq == 3 and gap[-1].seq == log.first_retained_seq - 1
    rest = await sub.next_batch()
    assert seqs(gap + rest) == list(range(3, 31))


async def test_lagged_subscriber_without_durable_events_gets_subscriber_lagged() -> None:
    store = MemoryStore()
    await store.open()
    broker = MemoryBroker(max_events=8)
    log = broker.open(STREAM, SID)
    publish_tokens(log, 30)
    sub = Subscription(broker, store, STREAM, 2)
    with pytest.raises(SubscriberLagged):
        await sub.next_batch()
    assert sub.last_seq == 2  # nothing was handed out


async def dead_stream(store: MemoryStore) -> None:
    """Three persisted events and no ``stream.end``: the process died mid-turn."""
    started = time.time() - 3600
    await store.save(
        Session(SID),
        events=[
            Event(1, STREAM, SID, "stream.started", {"user_message": "q"}, started),
            Event(2, STREAM, SID, "token", {"text": "alpha "}, started + 1),
            Event(3, STREAM, SID, "token", {"text": "beta "}, started + 2),
        ],
    )


@pytest.mark.parametrize("after", [0, 2, 3, 7])
async def test_dead_stream_is_one_batch_ending_interrupted(after: int) -> None:
    store = MemoryStore()
    await store.open()
    await dead_stream(store)
    repaired: list[str] = []

    async def on_dead(session_id: str) -> None:
        repaired.append(session_id)

    sub = Subscription(MemoryBroker(), store, STREAM, after, on_dead)
    batch = await sub.next_batch()
    assert await sub.next_batch() == []
    first = max(after, 3) + 1  # the ending is numbered after what the client saw
    assert seqs(batch) == list(range(after + 1, first + 2))
    assert [e.type for e in batch[-2:]] == ["error", "stream.end"]
    assert batch[-2].data["type"] == "interrupted"
    assert repaired == [SID]


async def test_runtime_events_batches_match_per_event_iteration() -> None:
    async with open_app() as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        stream_id = (
            await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "x"})
        ).json()["stream_id"]
        await s.runtime.wait_stream(stream_id)
        one_by_one = [e.to_dict() async for e in s.runtime.events(stream_id)]
        batched = [e.to_dict() async for b in s.runtime.events(stream_id).batches() for e in b]
    assert batched == one_by_one
    assert [e["seq"] for e in batched] == list(range(1, len(batched) + 1))
    assert batched[-1]["type"] == "stream.end"


def test_batch_encoder_shares_the_bytes_of_shared_batches_only() -> None:
    log = EventLog(STREAM, SID)
    batch = publish_tokens(log, 3)
    encoder = BatchEncoder(size=2)
    chunk = encoder.encode(batch, shared=True)
    assert chunk == b"".join(encode_sse(e) for e in batch)
    rebuilt = [Event.from_dict(e.to_dict()) for e in batch]  # another reader's objects
    assert encoder.encode(rebuilt, shared=True) is chunk  # same seqs of the same stream
    unshared = encoder.encode(batch, shared=False)
    assert unshared == chunk and unshared is not chunk
    encoder.encode(batch[:1], shared=True)
    encoder.encode(batch[1:], shared=True)  # a third entry evicts the oldest of size=2
    assert encoder.encode(batch, shared=True) is not chunk
    with pytest.raises(ValueError, match="size 0"):
        BatchEncoder(size=0)


def test_batch_encoder_chunks_cut_once_and_share_a_burst() -> None:
    """Subscribers reading the same burst get the same chunk object; a long batch is
    still cut into pieces of at most CHUNK_EVENTS events, each with its last seq."""
    log = EventLog(STREAM, SID)
    burst = publish_tokens(log, 20)
    encoder = BatchEncoder()
    ((chunk, last),) = list(encoder.chunks(burst, shared=True))
    assert chunk == b"".join(encode_sse(e) for e in burst) and last == burst[-1].seq
    rebuilt = [Event.from_dict(e.to_dict()) for e in burst]  # another reader's objects
    ((again, last_again),) = list(encoder.chunks(rebuilt, shared=True))
    assert again is chunk and last_again == last
    ((unshared, _),) = list(encoder.chunks(burst, shared=False))
    assert unshared == chunk and unshared is not chunk
    long = publish_tokens(log, 2 * CHUNK_EVENTS + 5)
    pieces = list(encoder.chunks(long, shared=True))
    assert [n for _, n in pieces] == [
        long[CHUNK_EVENTS - 1].seq,
        long[2 * CHUNK_EVENTS - 1].seq,
        long[-1].seq,
    ]
    assert b"".join(c for c, _ in pieces) == b"".join(encode_sse(e) for e in long)


async def test_from_log_tells_shared_events_from_a_dead_streams_replay() -> None:
    broker, store, log = await fresh()
    publish_tokens(log, 2)
    live = Subscription(broker, store, STREAM, 0)
    assert not live.from_log  # nothing read yet
    await live.next_batch()
    assert live.from_log
    other = MemoryStore()
    await other.open()
    await dead_stream(other)
    dead = Subscription(MemoryBroker(), other, STREAM, 0)
    await dead.next_batch()
    assert not dead.from_log


async def test_sse_sends_a_burst_as_one_chunk() -> None:
    """The agent publishes a burst of tokens without yielding (as a model's token
    stream does between awaits); the subscriber wakes once and sends one chunk."""
    reached, go = anyio.Event(), anyio.Event()
    burst = [f"b{i} " for i in range(10)]
    agent = scripted_agent(["a", Notify(reached), WaitFor(go), *burst, Reply()])
    async with open_app(agent) as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        stream_id = (
            await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "x"})
        ).json()["stream_id"]
        await reached.wait()

        def on_chunk(chunk: bytes, disconnect: anyio.Event) -> None:
            go.set()  # release the burst once the first chunk is out

        with anyio.fail_after(20):
            status, chunks = await drive_asgi_get(
                s.app, f"/api/streams/{stream_id}/events", on_chunk
            )
    assert status == 200
    assert chunks[0].startswith(b"retry: ")
    assert b"event: stream.started" in chunks[0]  # the first batch rides with the hint
    per_chunk: list[list[dict[str, Any]]] = [events_of(c.decode()) for c in chunks]
    flat = [e for evs in per_chunk for e in evs]
    assert [e["seq"] for e in flat] == list(range(1, len(flat) + 1))
    assert flat[-1]["type"] == "stream.end"
    burst_chunk = next(evs for evs in per_chunk if any(e["data"].get("text") == "b0 " for e in evs))
    assert [e["data"]["text"] for e in burst_chunk if e["type"] == "token"] == burst


async def _replay_finished_turn(tokens: list[str]) -> tuple[int, list[bytes]]:
    """Run a turn that streams ``tokens`` and a reply, then GET its events from seq 0
    (one replay batch): the response status and the body chunks as sent."""
    async with open_app(scripted_agent([*tokens, Reply()])) as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        stream_id = (
            await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "x"})
        ).json()["stream_id"]
        await s.runtime.wait_stream(stream_id)
        with anyio.fail_after(20):
            return await drive_asgi_get(
                s.app, f"/api/streams/{stream_id}/events", lambda chunk, disconnect: None
            )


async def test_a_long_replay_goes_out_in_bounded_chunks() -> None:
    """A finished stream replayed from seq 0 is one batch of every event; it is sent in
    chunks of at most CHUNK_EVENTS events, so one response never buffers it all."""
    tokens = [f"t{i} " for i in range(2 * CHUNK_EVENTS + 50)]
    status, chunks = await _replay_finished_turn(tokens)
    assert status == 200
    per_chunk = [events_of(c.decode()) for c in chunks]
    assert len(per_chunk) >= 3
    assert all(0 < len(evs) <= CHUNK_EVENTS for evs in per_chunk)
    flat = [e for evs in per_chunk for e in evs]
    assert [e["seq"] for e in flat] == list(range(1, len(flat) + 1))
    assert [e["data"]["text"] for e in flat if e["type"] == "token"] == tokens
    assert flat[-1]["type"] == "stream.end"


def test_batch_encoder_does_not_keep_long_chunks() -> None:
    log = EventLog(STREAM, SID)
    batch = publish_tokens(log, 3)
    encoder = BatchEncoder(max_bytes=10)
    chunk = encoder.encode(batch, shared=True)
    assert encoder.encode(batch, shared=True) is not chunk  # longer than 10 bytes
    with pytest.raises(ValueError, match="max_bytes -1"):
        BatchEncoder(max_bytes=-1)


async def test_subscribers_at_one_position_share_one_read_of_the_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The coalescing lives in the memory broker: the reads of the log that found
    events are counted (each waiting subscriber also looks once before it waits)."""
    reads: list[int] = []
    original = EventLog.read_nowait

    def counting_read(self: EventLog, after_seq: int) -> list[Event]:
        batch = original(self, after_seq)
        if batch:
            reads.append(after_seq)
        return batch

    monkeypatch.setattr(EventLog, "read_nowait", counting_read)
    broker, store, log = await fresh()
    subs = [Subscription(broker, store, STREAM, 0) for _ in range(5)]
    got: list[list[Event]] = []

    async def follow(sub: Subscription) -> None:
        got.append(await sub.next_batch())

    async with anyio.create_task_group() as tg:
        for sub in subs:
            tg.start_soon(follow, sub)
        await anyio.wait_all_tasks_blocked()
        published = publish_tokens(log, 3)
    assert reads == [0]  # one read for five subscribers
    assert all(batch == published for batch in got)
    assert len({id(batch) for batch in got}) == 5  # each its own list
    got[0].clear()
    assert got[1] == published
    assert all(sub.last_seq == 3 for sub in subs)


async def test_when_the_reading_subscriber_leaves_the_others_read_for_themselves() -> None:
    broker, store, log = await fresh()
    leader, follower = (Subscription(broker, store, STREAM, 0) for _ in range(2))
    got: list[Event] = []

    async def follow() -> None:
        got.extend(await follower.next_batch())

    async with anyio.create_task_group() as tg:
        async with anyio.create_task_group() as leader_tg:
            leader_tg.start_soon(leader.next_batch)  # waits first: it reads the log
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(follow)  # waits for the leader's read
            await anyio.wait_all_tasks_blocked()
            leader_tg.cancel_scope.cancel()  # the leader's client went away
        await anyio.wait_all_tasks_blocked()
        published = publish_tokens(log, 2)
    assert got == published
    assert leader.last_seq == 0


async def test_a_replay_of_large_events_goes_out_in_chunks_bounded_by_bytes() -> None:
    """16 KiB tokens: a chunk holds at most CHUNK_BYTES of event JSON (plus one event),
    so a reader that stalls pins little of the server's memory."""
    tokens = [f"{i:05d}" + "x" * (16 * 1024) for i in range(40)]
    status, chunks = await _replay_finished_turn(tokens)
    assert status == 200
    per_chunk = [(len(c), events_of(c.decode())) for c in chunks]
    assert len(per_chunk) >= 40 * 16 * 1024 // CHUNK_BYTES
    # several events share a chunk only within the byte bound (SSE framing adds ~60
    # bytes an event); one event larger than it (the whole reply's message) goes alone
    assert all(size <= CHUNK_BYTES + 256 * len(evs) for size, evs in per_chunk if len(evs) > 1)
    assert max(len(evs) for _, evs in per_chunk) < 16
    flat = [e for _, evs in per_chunk for e in evs]
    assert [e["seq"] for e in flat] == list(range(1, len(flat) + 1))
    assert [e["data"]["text"] for e in flat if e["type"] == "token"] == tokens
