"""The event-log conformance checks: what every :class:`~runtime.brokers.abc.Broker`
must do (see :mod:`runtime.testing`).

Each check is ``async def check_*(factory)`` where ``factory(retention=..., max_events=...)``
returns a new broker (``retention`` in seconds, ``max_events`` the retained window per
stream). The checks close what they open with ``aclose()``.

For a backend several processes share (``Broker.shared``), each call of the factory
stands for another process on the same server: brokers it makes must see each other's
streams (the cross-process checks use two). Checks of behaviour only a shared backend
has pass at once on one that is not, after checking that it says so (``attach`` is
``get``, ``request_cancel`` is ``False``).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable, Iterable
from typing import Protocol

import anyio
import anyio.lowlevel

from .._events import Event
from .._exceptions import StreamNotFound, SubscriberLagged
from ..brokers.abc import Broker
from ._store_checks import _equal, _raises, _require


class BrokerFactory(Protocol):
    """Makes an empty broker: ``factory(retention=300.0, max_events=100_000)``."""

    def __call__(self, *, retention: float = ..., max_events: int = ...) -> Broker: ...


class EventLogCheck(Protocol):
    """The signature of every check of :data:`EVENT_LOG_CHECKS`."""

    __name__: str

    def __call__(self, factory: BrokerFactory) -> Awaitable[None]: ...


def _seqs(events: Iterable[Event]) -> list[int]:
    return [e.seq for e in events]


async def check_publish_and_read_in_order(factory: BrokerFactory) -> None:
    """Published events get ``seq`` 1, 2, 3 … with the stream's and session's ids;
    ``read_nowait``/``read``/``events_between`` return them in order from any position;
    ``get`` finds the log; after ``stream.end`` the log is closed, ``read`` past the
    end returns ``[]`` and ``publish`` raises ``RuntimeError``.

    Rule: DESIGN.md, "Event log and subscribers" (gapless seq per stream; replay from
    any point; ``stream.end`` is always last).
    """
    broker = factory()
    try:
        log = broker.open("s1", "sess")
        _equal((log.last_seq, log.first_retained_seq), (0, 1), "an empty log's seqs")
        published = [log.publish("token", {"text": f"t{i}"}) for i in range(5)]
        _equal(_seqs(published), [1, 2, 3, 4, 5], "seqs of published events")
        _require(
            all(e.stream_id == "s1" and e.session_id == "sess" for e in published),
            "events carry the stream's and session's ids",
        )
        _require(broker.get("s1") is log, "get() returns the opened log")
        _equal(log.read_nowait(0), published, "read_nowait(0)")
        _equal(await log.read(2), published[2:], "read(2)")
        _equal(log.events_between(1, 3), published[1:3], "events_between(1, 3)")
        end = log.publish("stream.end", {"outcome": "done"})
        _require(log.closed, "the log is closed after stream.end")
        _equal(await log.read(end.seq), [], "read() past stream.end")
        with _raises(RuntimeError, "publish() after stream.end"):
            log.publish("token", {"text": "late"})
        await log.flush()
    finally:
        await broker.aclose()


async def check_append_refuses_gaps_and_bad_data(factory: BrokerFactory) -> None:
    """``append`` takes only the next ``seq`` (``ValueError`` for a gap or repeat), and
    data that is not JSON-ready is refused with ``TypeError`` at the call; nothing is
    appended either way.

    Rule: DESIGN.md, "Vocabulary" (seq gapless per stream); bad input gets a clear error
    and writes nothing.
    """
    broker = factory()
    try:
        log = broker.open("s2", "sess")
        log.publish("token", {"text": "a"})
        for seq in (1, 3):
            with _raises(ValueError, f"append(seq={seq}) after seq 1"):
                log.append(Event(seq, "s2", "sess", "token", {"text": "x"}, 0.0))
        with _raises(TypeError, "publish() of data that is not JSON-ready"):
            log.publish("token", {"text": object()})
        _equal(log.last_seq, 1, "last_seq after refused appends")
        log.append(Event(2, "s2", "sess", "token", {"text": "b"}, 0.0))
        _equal(_seqs(log.read_nowait(0)), [1, 2], "seqs after a valid append")
    finally:
        await broker.aclose()


async def check_readers_wait_and_all_get_every_event(factory: BrokerFactory) -> None:
    """Ten readers waiting on an empty stream are woken by publishes; each gets every
    event exactly once, in order, in batches of its own (one reader clearing its list
    does not touch the others), and each ends after ``stream.end``.

    Rule: DESIGN.md, "Event log and subscribers" (several subscribers follow one
    stream; delivery is batched; a slow subscriber never blocks the agent).
    """
    broker = factory()
    try:
        log = broker.open("s3", "sess")
        got: dict[int, list[int]] = {}

        async def follow(i: int) -> None:
            seen: list[int] = []
            after = 0
            while batch := await log.read(after):
                seen += _seqs(batch)
                after = batch[-1].seq
                batch.clear()
            got[i] = seen

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(follow, i)
            await anyio.wait_all_tasks_blocked()
            for burst in range(5):
                for j in range(7):
                    log.publish("token", {"text": f"{burst}.{j}"})
                await anyio.lowlevel.checkpoint()
            log.publish("stream.end", {"outcome": "done"})
        _equal(sorted(got), list(range(10)), "readers that finished")
        for i, seen in got.items():
            _equal(seen, list(range(1, 37)), f"events reader {i} got")
    finally:
        await broker.aclose()


async def check_waiters_wake_and_cancel_alone(factory: BrokerFactory) -> None:
    """A backend whose :meth:`~runtime.brokers.abc.StreamLog.waiter` returns an
    awaitable: ten readers that wait on it and then ``read_nowait`` get every event
    exactly once, in order, and end after ``stream.end``; a waiter that is cancelled
    leaves the others waiting; a waiter asked for after the event it waits for is
    already there is done at once, and so is one on a closed log. A backend that
    returns ``None`` (no such wait) passes after checking it does so for every call.

    Rule: DESIGN.md, "Event log and subscribers" (several subscribers follow one
    stream; delivery is batched; a subscriber that leaves never affects the others).
    """
    broker = factory()
    try:
        log = broker.open("s-waiter", "sess")
        if log.waiter(0) is None:
            log.publish("token", {"text": "a"})
            _require(log.waiter(0) is None and log.waiter(1) is None, "waiter is None throughout")
            return
        got: dict[int, list[int]] = {}

        async def follow(i: int) -> None:
            seen: list[int] = []
            after = 0
            while True:
                batch = log.read_nowait(after)
                if batch:
                    seen += _seqs(batch)
                    after = batch[-1].seq
                    if batch[-1].type == "stream.end":
                        break
                    continue
                waiter = log.waiter(after)
                _require(waiter is not None, "a waiter once the backend has offered one")
                assert waiter is not None
                await waiter
            got[i] = seen

        async def leave(scope: anyio.CancelScope) -> None:
            with scope:
                waiter = log.waiter(0)
                assert waiter is not None
                await waiter

        async with anyio.create_task_group() as tg:
            gone = anyio.CancelScope()
            tg.start_soon(leave, gone)
            for i in range(10):
                tg.start_soon(follow, i)
            await anyio.wait_all_tasks_blocked()
            gone.cancel()  # one waiter leaves before the first publish
            await anyio.wait_all_tasks_blocked()
            for burst in range(5):
                for j in range(7):
                    log.publish("token", {"text": f"{burst}.{j}"})
                await anyio.wait_all_tasks_blocked()
            early = log.waiter(0)
            assert early is not None
            with anyio.move_on_after(2) as waited:  # a bound on a hang, not a timing
                await early
            early_done = not waited.cancelled_caught
            log.publish("stream.end", {"outcome": "done"})
        _require(early_done, "a waiter for events already there is done")
        _equal(sorted(got), list(range(10)), "readers that finished")
        for i, seen in got.items():
            _equal(seen, list(range(1, 37)), f"events reader {i} got")
        closed = log.waiter(log.last_seq)
        assert closed is not None
        with anyio.move_on_after(2) as waited:
            await closed
        _require(not waited.cancelled_caught, "a waiter on a closed log is done")
    finally:
        await broker.aclose()


async def check_window_is_bounded(factory: BrokerFactory) -> None:
    """With ``max_events=8``, publishing 100 events keeps at most 8 (plus what a
    backend drops in chunks: never more than 8) retained, ``first_retained_seq`` moves
    on, and reading from before it raises :class:`~runtime.SubscriberLagged` naming
    the stream; reading from a retained position works.

    Rule: DESIGN.md, "Event log and subscribers" (bounded memory; a subscriber that
    falls off the retained window gets a clear error and can resume from the store).
    """
    broker = factory(max_events=8)
    try:
        log = broker.open("s4", "sess")
        for i in range(100):
            log.publish("token", {"text": str(i)})
        first = log.first_retained_seq
        _require(100 - first + 1 <= 8, f"retained events with max_events=8: {100 - first + 1}")
        with _raises(SubscriberLagged, "read_nowait() from before the window") as caught:
            log.read_nowait(0)
        _require("s4" in str(caught.value), f"the error names the stream: {caught.value}")
        _equal(_seqs(log.read_nowait(first - 1)), list(range(first, 101)), "retained events")
    finally:
        await broker.aclose()


async def check_retention_and_drop(factory: BrokerFactory) -> None:
    """A finished stream stays readable for ``retention`` seconds, then ``get`` raises
    :class:`~runtime.StreamNotFound`; a live stream never expires; ``drop`` forgets a
    log at once; unknown ids raise ``StreamNotFound``; opening an existing id raises
    ``ValueError``.

    Rule: DESIGN.md, "Event log and subscribers" (the log of a finished stream stays
    readable for a retention period).
    """
    broker = factory(retention=0.2)
    try:
        done = broker.open("done", "sess")
        done.publish("stream.end", {"outcome": "done"})
        live = broker.open("live", "sess")
        live.publish("token", {"text": "still going"})
        with _raises(ValueError, "open() of an existing stream id"):
            broker.open("live", "sess")
        _require(broker.get("done") is done, "a finished stream within its retention")
        await anyio.sleep(0.35)
        broker.open("trigger", "sess")  # backends may expire lazily, on open
        with _raises(StreamNotFound, "get() of a finished stream after its retention"):
            broker.get("done")
        _require(broker.get("live") is live, "a live stream never expires")
        broker.drop("live")
        with _raises(StreamNotFound, "get() of a dropped stream"):
            broker.get("live")
        with _raises(StreamNotFound, "get() of an unknown stream"):
            broker.get("never")
    finally:
        await broker.aclose()


def _new_id() -> str:
    """A stream id no other run of a check uses (a shared server outlives one run)."""
    return uuid.uuid4().hex[:16] + ".sess"


async def check_subscribe_while_publishing(factory: BrokerFactory) -> None:
    """Readers join while events are being published, each from its own resume point
    (some from 0, some from a position reached so far), through ``attach`` (on a shared
    backend from another process's broker): each gets every event after its point
    exactly once, in order, and ends with ``stream.end``; nothing published while it
    joined is lost or repeated.

    Rule: DESIGN.md, "Scale-out" (subscribe-then-replay with de-duplication, so nothing
    published in between is lost).
    """
    owner = factory()
    other = factory() if owner.shared else owner
    rng = random.Random(7)
    try:
        stream_id = _new_id()
        log = owner.open(stream_id, "sess")
        total = 1500
        got: dict[int, tuple[int, list[int]]] = {}

        async def join(i: int, after: int) -> None:
            follower = await other.attach(stream_id)
            seen: list[int] = []
            position = after
            while batch := await follower.read(position):
                seen += _seqs(batch)
                position = batch[-1].seq
            got[i] = (after, seen)

        async with anyio.create_task_group() as tg:
            for n in range(total):
                log.publish("token", {"text": f"t{n}"})
                if n % 100 == 50:
                    await log.flush()  # the other process can only see what was sent
                    after = 0 if n % 200 == 50 else rng.randint(0, log.last_seq)
                    tg.start_soon(join, n, after)
                if n % 37 == 0:
                    await anyio.lowlevel.checkpoint()
            end = log.publish("stream.end", {"outcome": "done"})
            await log.flush()
        _require(len(got) == total // 100, f"readers that finished: {len(got)}")
        for i, (after, seen) in sorted(got.items()):
            _equal(seen, list(range(after + 1, end.seq + 1)), f"events of reader {i} from {after}")
    finally:
        await owner.aclose()
        if other is not owner:
            await other.aclose()


async def check_attach_from_another_process(factory: BrokerFactory) -> None:
    """On a shared backend, a second broker (another process) attaches to a stream the
    first runs: it reads every sent event (``read_within`` gives ``None`` at the head
    once nothing came for its ``seconds``), cannot publish or append (only the owner
    allocates ``seq``: ``RuntimeError``), and sees ``stream.end``, also when it resumed
    at the newest event and waited there; an unknown stream is
    :class:`~runtime.StreamNotFound`. On a backend that is not shared, ``attach`` is
    ``get``.

    Rule: DESIGN.md, "Scale-out" (only the lease owner allocates ``seq``; any node
    streams any turn).
    """
    owner = factory()
    try:
        stream_id = _new_id()
        log = owner.open(stream_id, "sess")
        published = [log.publish("token", {"text": str(i)}) for i in range(5)]
        if not owner.shared:
            _require(await owner.attach(stream_id) is log, "attach() of a local stream is get()")
            _equal(await log.read_within(0, 0.05), published, "read_within() with events")
            _equal(await log.read_within(5, 0.05), None, "read_within() at a quiet head")
            with _raises(StreamNotFound, "attach() of an unknown stream"):
                await owner.attach(_new_id())
            return
        await log.flush()
        other = factory()
        try:
            try:
                view = await other.attach(stream_id)
            except StreamNotFound as exc:
                raise AssertionError(f"a second broker cannot attach to the stream: {exc}") from exc
            _require(view.remote, "a stream another process runs is remote")
            _equal(view.session_id, "sess", "the session of an attached stream")
            _equal(await view.read(0), published, "events read from another process")
            _equal(await view.read_within(0, 0.05), published, "read_within() with events")
            with anyio.fail_after(10):
                quiet = await view.read_within(5, 0.05)
            _equal(quiet, None, "read_within() at the head of a stream nobody publishes to")
            for attempt in ("publish", "append"):
                with _raises(RuntimeError, f"{attempt}() on another process's stream"):
                    if attempt == "publish":
                        view.publish("token", {"text": "forged"})
                    else:
                        view.append(Event(6, stream_id, "sess", "token", {}, 0.0))
            third = factory()  # a third process resumes at the head, before the end
            at_head: list[Event] = []

            async def resume_at_head() -> None:
                at_head.extend(await (await third.attach(stream_id)).read(5))

            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(resume_at_head)
                    await anyio.sleep(0.1)  # let it wait at the head (either order passes)
                    end = log.publish("stream.end", {"outcome": "done"})
                    await log.flush()
            finally:
                await third.aclose()
            _equal(_seqs(at_head), [end.seq], "a read at the head, from another process")
            _equal(_seqs(await view.read(5)), [end.seq], "the end, read from another process")
            _equal(await view.read(end.seq), [], "read() past stream.end")
            with _raises(StreamNotFound, "attach() of an unknown stream"):
                await other.attach(_new_id())
        finally:
            await other.aclose()
    finally:
        await owner.aclose()


async def check_cancel_request_reaches_owner(factory: BrokerFactory) -> None:
    """On a shared backend, ``request_cancel(stream_id, owner)`` from one broker reaches
    ``serve_cancel_requests(owner, handler)`` of another and returns ``True``; a request
    to a node nobody serves returns ``False``. A backend that is not shared returns
    ``False`` and its ``serve_cancel_requests`` returns at once.

    Rule: DESIGN.md, "Scale-out" (the event log carries cross-node cancel requests).
    """
    owner = factory()
    try:
        if not owner.shared:
            _require(not await owner.request_cancel("x", "node"), "request_cancel() unshared")
            with anyio.fail_after(5):
                await owner.serve_cancel_requests("node", lambda s: None)
            return
        node = "node-" + uuid.uuid4().hex[:8]
        other = factory()
        received: list[str] = []
        got = anyio.Event()

        def handler(stream_id: str) -> None:
            received.append(stream_id)
            got.set()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(owner.serve_cancel_requests, node, handler)
                with anyio.fail_after(10):
                    while True:  # until the subscription is in place
                        if await other.request_cancel("s-cancel", node):
                            break
                        await anyio.sleep(0.02)
                    await got.wait()
                tg.cancel_scope.cancel()
            _equal(received[:1], ["s-cancel"], "cancel requests received")
            _require(
                not await other.request_cancel("s-cancel", node + "-nobody"),
                "a request to a node nobody serves is not delivered",
            )
        finally:
            await other.aclose()
    finally:
        await owner.aclose()


#: Every event-log check, in a stable order; each is ``async (factory) -> None``.
EVENT_LOG_CHECKS: tuple[EventLogCheck, ...] = (
    check_publish_and_read_in_order,
    check_append_refuses_gaps_and_bad_data,
    check_readers_wait_and_all_get_every_event,
    check_waiters_wake_and_cancel_alone,
    check_window_is_bounded,
    check_retention_and_drop,
    check_subscribe_while_publishing,
    check_attach_from_another_process,
    check_cancel_request_reaches_owner,
)


async def run_event_log_conformance(
    factory: BrokerFactory, *, checks: Iterable[EventLogCheck] = EVENT_LOG_CHECKS
) -> None:
    """Run every event-log check against a backend.

    :param factory: ``factory(retention=..., max_events=...)`` makes an empty broker,
        e.g. ``MemoryBroker``.
    :raises AssertionError: if any check fails, listing each failure (chained as an
        ``ExceptionGroup``).
    """
    failures: list[Exception] = []
    for check in checks:
        try:
            await check(factory)
        except Exception as exc:
            exc.add_note(f"in {check.__name__}")
            failures.append(exc)
    if failures:
        summary = "\n".join(f"{f.__notes__[-1]}: {type(f).__name__}: {f}" for f in failures)
        raise AssertionError(
            f"{len(failures)} event-log conformance check(s) failed:\n{summary}"
        ) from ExceptionGroup("event-log conformance failures", failures)
