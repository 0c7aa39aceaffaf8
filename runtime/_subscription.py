"""Following a stream: replay what a subscriber missed, then live events.

A stream is read from the live event log while this process holds it, and from the
store's durable events otherwise (after a restart, or once the log's retention has
passed). A durable stream that never reached ``stream.end`` belonged to a process
that died: it is closed with an ``error`` ``{"type": "interrupted"}`` and
``stream.end``, never left hanging. Unless another process still holds its lease: then
the event log simply does not have it yet (a client that reached this node the moment
the owner answered, before the owner's first events reached a shared log), and the
subscriber hands out what the store holds and attaches to the log again.

Fan-out: the subscribers of a stream that wait at the same position share one read of
its log (inside the event-log backend), and each hands out the events a batch at a time
(:meth:`Subscription.next_batch`), which is what lets one stream feed 1,000 SSE
clients (docs/benchmarks.md, W5).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Self

import anyio

from . import _events as ev
from ._events import Event
from ._exceptions import SessionNotFound, StreamNotFound, SubscriberLagged
from ._session import validate_session_id
from .brokers.abc import Broker, StreamLog
from .repair import leased_elsewhere
from .stores.abc import Store

__all__ = ["QuietChecks", "Subscription", "new_stream_id", "session_of_stream"]


#: an exhausted batch (never appended to)
_NO_EVENTS: list[Event] = []


def new_stream_id(session_id: str) -> str:
    """``<16 hex>.<session_id>``: the session is recoverable from the stream id, so a
    stream can be replayed from its session's durable events after a restart."""
    return f"{uuid.uuid4().hex[:16]}.{session_id}"


def session_of_stream(stream_id: str) -> str:
    """The session id inside a stream id.

    :raises StreamNotFound: if ``stream_id`` is not of the form this runtime makes.
    """
    head, sep, session_id = stream_id.partition(".") if isinstance(stream_id, str) else ("", "", "")
    if not sep or len(head) != 16 or not all(c in "0123456789abcdef" for c in head):
        raise StreamNotFound(f"no stream {stream_id!r}: not a stream id of this runtime")
    try:
        return validate_session_id(session_id)
    except ValueError as exc:
        raise StreamNotFound(f"no stream {stream_id!r}: not a stream id of this runtime") from exc


class QuietChecks:
    """The checks of quiet remote streams of one runtime: concurrent checks of one
    stream share one run (one repair attempt and one metadata read for all of that
    process's subscribers of the stream, not one each: at 1,000 subscribers of a stream
    that thinks on another node, the difference is 3,000 store reads every ``liveness``
    seconds). Results are not cached: a check that starts after one ended runs again."""

    __slots__ = ("_runs",)

    def __init__(self) -> None:
        self._runs: dict[str, _Check] = {}

    async def run(self, stream_id: str, check: Callable[[], Awaitable[bool]]) -> bool:
        """``await check()``, or the result of the run of it already under way for
        ``stream_id`` (its exception, if it raised; a run whose caller was cancelled is
        not shared: the next waiter runs the check itself)."""
        while (run := self._runs.get(stream_id)) is not None:
            await run.done.wait()
            if run.finished:
                if run.error is not None:
                    raise run.error
                return run.result
        run = self._runs[stream_id] = _Check()
        try:
            run.result = await check()
            run.finished = True
        except Exception as exc:
            run.error, run.finished = exc, True
            raise
        finally:
            del self._runs[stream_id]
            run.done.set()
        return run.result


class _Check:
    __slots__ = ("done", "error", "finished", "result")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.finished = False
        self.result = False
        self.error: Exception | None = None


class Subscription:
    """``async for event in rt.events(stream_id, after_seq)``: events with ``seq >
    after_seq`` in order, each once, ending after ``stream.end``.

    :meth:`next_batch` and :meth:`batches` hand out the same events a batch at a time:
    every event available when the subscriber wakes, in one list (what an SSE writer
    sends as one chunk). The two styles may be mixed; each event is delivered once.

    Leaving the loop early (``break``, cancellation, a dropped connection) never
    affects the turn. Holds no task and no resource, so it needs no closing.

    :ivar last_seq: the ``seq`` of the last event handed out (``after_seq`` before the
        first); resuming with ``rt.events(stream_id, last_seq)`` continues exactly here.
    :raises StreamNotFound: (from iteration) for a stream neither live, retained nor
        persisted.
    :raises SubscriberLagged: (from iteration) if the subscriber fell behind the live
        window and the store does not hold the missing events either.
    """

    def __init__(
        self,
        broker: Broker,
        store: Store,
        stream_id: str,
        after_seq: int,
        on_dead_stream: Callable[[str], Awaitable[object]] | None = None,
        *,
        liveness: float = 2.0,
        quiet_checks: QuietChecks | None = None,
    ) -> None:
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
            raise ValueError(f"invalid after_seq {after_seq!r}: must be an integer >= 0")
        self._broker = broker
        self._store = store
        self.stream_id = stream_id
        self.last_seq = after_seq
        self._on_dead_stream = on_dead_stream
        self._liveness = liveness  # seconds without events before asking the store
        self._quiet_checks = quiet_checks if quiet_checks is not None else QuietChecks()
        self._batch: list[Event] = _NO_EVENTS  # fetched, partly handed out by __anext__
        self._pos = 0
        self._log: StreamLog | None = None
        self._durable: bool | None = None  # None: not decided yet
        self._retry = 0.0  # seconds before attaching again to a stream live elsewhere
        self._elsewhere = False  # the store named the stream live on another process
        self._done = False  # stream.end fetched (or the stream cannot go on)

    @property
    def from_log(self) -> bool:
        """Whether the events come from this process's log of the stream (live or
        retained; events the window dropped are read back from the store, unchanged),
        so that every subscriber gets the same event for a ``seq``. ``False`` before the
        first batch and when replaying a stream this process does not hold, whose
        made-up ending depends on the resume point."""
        return self._durable is False

    @property
    def following_live(self) -> bool:
        """Whether this subscription follows a stream that exists and, as far as it
        knows, has not ended: attached to a shared event log another process appends
        to, or reading the store while the store names the stream live on another
        process. A server that holds its response back until it knows whether the
        stream exists (404) or is over (204) may send its headers once this is
        ``True``. ``False`` before the first batch is fetched."""
        if self._done:
            return False
        log = self._log
        if self._durable is False and log is not None:
            return log.remote
        return self._elsewhere

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        if self._pos >= len(self._batch):
            self._batch = _NO_EVENTS  # not held across the wait: it would be promoted
            log = self._log
            if log is not None and self._durable is False and not self._done and not log.remote:
                # this process's log, read here rather than in next_batch, and waited on
                # through its waiter where it has one: no coroutine but this one held
                # across every wait (each is an object the collector promotes, W6)
                after = self.last_seq
                try:
                    batch = log.read_nowait(after)
                    while not batch and not log.closed:
                        waiter = log.waiter(after)
                        if waiter is None:
                            batch = await log.read(after)
                            break
                        batch = _NO_EVENTS  # the empty list read is not held across the wait
                        await waiter
                        del waiter  # not held across the next wait
                        batch = log.read_nowait(after)
                except SubscriberLagged as exc:
                    batch = await self._fill_gap(exc.first_retained_seq)
                if not batch or batch[-1].type == ev.STREAM_END:
                    self._done = True  # as next_batch: ended, or drained without stream.end
            else:
                last_seq = self.last_seq
                batch = await self.next_batch()
                self.last_seq = last_seq  # handed out one event at a time: follows them
            self._batch = batch
            self._pos = 0
            if not batch:
                raise StopAsyncIteration
        event = self._batch[self._pos]
        self._pos += 1
        self.last_seq = event.seq
        return event

    async def next_batch(self) -> list[Event]:
        """Wait for events after :attr:`last_seq` and return every one available, in
        ``seq`` order (a list of at least one event); ``[]`` once ``stream.end`` has
        been handed out. A batch never extends past ``stream.end``.

        :raises StreamNotFound: for a stream neither live, retained nor persisted.
        :raises SubscriberLagged: if the subscriber fell behind the live window and the
            store does not hold the missing events either.
        """
        if self._pos < len(self._batch):  # the rest of what __anext__ was handing out
            rest = self._batch[self._pos :]
            self._batch, self._pos = _NO_EVENTS, 0
            self.last_seq = rest[-1].seq
            return rest
        self._batch, self._pos = _NO_EVENTS, 0
        # The fetch, in this coroutine (no helper coroutine per step, no new list): a
        # subscriber waiting for the next burst holds as few objects as possible (at
        # 1,000 subscribers, what they hold across a wait is what the garbage collector
        # walks and promotes at every burst, docs/benchmarks.md, W5).
        while not self._done:
            if self._durable is None:
                try:
                    self._log = await self._broker.attach(self.stream_id)
                    self._durable = False
                except StreamNotFound:
                    self._durable = True
            if self._durable:
                batch = await self._durable_batch()
                if batch is None:  # the dead stream was resumed here: follow its log
                    continue
            else:
                log = self._log
                assert log is not None
                try:
                    if log.remote:
                        remote = await log.read_within(self.last_seq, self._liveness)
                        if remote is None:
                            await self._check_remote()
                            continue
                        batch = remote
                    else:
                        batch = await log.read(self.last_seq)
                except SubscriberLagged as exc:
                    batch = await self._fill_gap(exc.first_retained_seq)
                if not batch:  # ended and drained without stream.end: never hang
                    self._done = True
            if batch:
                if batch[-1].type == ev.STREAM_END:
                    self._done = True
                self.last_seq = batch[-1].seq
                return batch
        return []

    def next_batch_nowait(self) -> list[Event] | None:
        """:meth:`next_batch` without waiting, where that is possible: the events after
        :attr:`last_seq` already in this process's log of the stream (a non-empty list,
        handed out exactly as :meth:`next_batch` hands it out), or ``None`` when there
        are none yet or this step needs :meth:`next_batch` (the first fetch, a replay
        from the store, a subscriber that fell behind, the stream's end). This
        process's log may be a view of a log another process appends to
        (:attr:`StreamLog.remote`): the events are then those the view already read.
        With :meth:`waiter` it lets a writer follow a stream holding no coroutine across
        its waits (the SSE edge at 1,000 subscribers, docs/benchmarks.md, W5)."""
        log = self._log
        if log is None or self._durable is not False or self._done:
            return None
        if self._pos < len(self._batch):
            return None
        try:
            batch = log.read_nowait(self.last_seq)
        except SubscriberLagged:
            return None  # next_batch fills the gap from the store
        if not batch:
            return None
        if batch[-1].type == ev.STREAM_END:
            self._done = True
        self.last_seq = batch[-1].seq
        return batch

    def waiter(self) -> Awaitable[None] | None:
        """After :meth:`next_batch_nowait` returned ``None``: something to await before
        trying it again (done once this process's log holds an event after
        :attr:`last_seq`, or is closed), or ``None`` when the caller must await
        :meth:`next_batch` instead: the log offers no waiter, the subscriber fell behind
        the log's window (the store fills the gap), the log is closed, or a
        :attr:`~StreamLog.remote` log's writer has been quiet (:meth:`next_batch` then
        asks the store whether it died). See :meth:`StreamLog.waiter`."""
        log = self._log
        if log is None or self._durable is not False or self._done or log.closed:
            return None
        if self.last_seq + 1 < log.first_retained_seq:
            return None  # behind the window: a waiter would be done at once, forever
        return log.waiter(self.last_seq)

    async def batches(self) -> AsyncIterator[list[Event]]:
        """``async for batch in sub.batches()``: :meth:`next_batch` until the stream
        ends; each batch is a non-empty ``list[Event]``.

        :raises StreamNotFound: as :meth:`next_batch`.
        :raises SubscriberLagged: as :meth:`next_batch`.
        """
        while batch := await self.next_batch():
            yield batch

    async def _check_remote(self) -> None:
        """Nothing came for ``liveness`` seconds from a log another process appends to:
        ask the store whether the stream is over (then the rest comes from the store: a
        process that died never ends its log, and its ending is made up once its lease
        has expired). The subscribers of the stream in this process share one check."""
        if not await self._quiet_checks.run(self.stream_id, self._still_active):
            self._durable = True

    async def _still_active(self) -> bool:
        """Repair the stream's session if its owner's lease expired; whether the session
        still names the stream as its live one (``True`` when the store does not hold
        the session: the log is all there is)."""
        session_id = session_of_stream(self.stream_id)
        try:
            if self._on_dead_stream is not None:
                await self._on_dead_stream(session_id)  # repairs it once the lease expired
            meta = await self._store.load_metadata(session_id)
        except SessionNotFound:  # a store that does not hold the stream's session
            return True  # cannot tell: the log is all there is
        return meta.active_stream_id == self.stream_id

    async def _live_elsewhere(self, session_id: str) -> bool:
        """Whether another process runs the stream: the store names it as the session's
        live stream and its lease has not expired."""
        if self._store.exclusive:  # nobody else can hold its leases
            return False
        try:
            meta = await self._store.load_metadata(session_id)
        except SessionNotFound:
            return False
        return meta.active_stream_id == self.stream_id and await leased_elsewhere(
            self._store, session_id
        )

    async def _fill_gap(self, first: int) -> list[Event]:
        """Events before ``first`` that the live log no longer (or never) held, from the
        store's durable log."""
        session_id = session_of_stream(self.stream_id)
        durable = await self._store.load_events(session_id, self.stream_id, self.last_seq)
        expected = self.last_seq + 1
        gap = []
        for event in durable:
            if event.seq >= first:
                break
            if event.seq != expected and not _declared(event, expected):
                break
            gap.append(event)
            expected = event.seq + 1
        if expected < first:
            live: list[Event] = []
            if self._log is not None:
                with contextlib.suppress(SubscriberLagged):
                    live = self._log.read_nowait(first - 1)
            if not (live and _declared(live[0], expected)):
                raise SubscriberLagged(self.stream_id, expected, first)
            return gap + live  # the gap is the void a resume declared
        return gap

    async def _durable_batch(self) -> list[Event] | None:
        """The whole rest of a stream this process does not hold, from the store;
        ``None`` if the dead stream was resumed by this process meanwhile, or if another
        process still runs it and the store holds nothing new (the caller attaches to
        the event log again, after a pause that doubles up to ``liveness``).

        Cancellation-safe: ``_done`` is set only with the stream's last batch, so a
        caller that gave up waiting here (the SSE edge bounds its wait before the
        headers) can call :meth:`next_batch` again."""
        session_id = session_of_stream(self.stream_id)
        # Whether another process runs it, asked BEFORE the events are read: a final
        # save that commits between the two reads is then in the events (read after
        # it, a stream that ended meanwhile looked dead and got a made-up ending).
        live = await self._live_elsewhere(session_id)
        # Followed while it runs: only what came after this subscriber's last event
        # (a poll that read the whole stream cost O(stream) each time). A stream that
        # looks dead is read whole: its last stored event numbers a made-up ending.
        after = self.last_seq if live else 0
        events = await self._store.load_events(session_id, self.stream_id, after)
        ended = bool(events) and events[-1].type == ev.STREAM_END
        if not ended and not live and events and self._on_dead_stream is not None:
            await self._on_dead_stream(session_id)  # repaired, or resumed here or elsewhere
            try:
                self._log = self._broker.get(self.stream_id)  # resumed by this process
            except StreamNotFound:
                pass
            else:
                self._durable = False
                return None
            live = await self._live_elsewhere(session_id)  # resumed by another process
            if not live:  # it may have ended since the events were read
                events = await self._store.load_events(session_id, self.stream_id, 0)
                ended = bool(events) and events[-1].type == ev.STREAM_END
        live = live and not ended
        self._elsewhere = live
        if live:
            # its owner's log has not reached this node's event log yet: hand out what
            # the store holds, then attach again (never a made-up ending, never a 404)
            self._durable = None
            out = [e for e in events if e.seq > self.last_seq]
            if out:
                self._retry = 0.0
                return out
            self._retry = min(max(2 * self._retry, 0.02), self._liveness)
            await anyio.sleep(self._retry)
            return None
        self._done = True
        if not events:
            raise StreamNotFound(f"no live, retained or persisted stream {self.stream_id!r}")
        out = [e for e in events if e.seq > self.last_seq]
        last = events[-1]
        if last.type != ev.STREAM_END:
            # Number the ending after whatever this subscriber already saw live: it may
            # have run ahead of the last checkpoint, and must still learn the stream died.
            # (At most the dead attempt's seq reservation: a resume starts after it and
            # after these two seqs.)
            base = max(last.seq, self.last_seq)
            ts = time.time()
            data = {
                "type": "interrupted",
                "interruption_cause": "process_restart",
                "message": "the process running this stream stopped before it ended",
            }
            out.append(Event(base + 1, self.stream_id, session_id, ev.ERROR, data, ts))
            out.append(
                Event(
                    base + 2,
                    self.stream_id,
                    session_id,
                    ev.STREAM_END,
                    {"outcome": "interrupted"},
                    ts,
                )
            )
        out = [e for e in out if e.seq > self.last_seq]
        ends = [i for i, e in enumerate(out) if e.type == ev.STREAM_END]
        return out[: ends[0] + 1] if ends else out  # nothing after stream.end, ever


def _declared(event: Event, expected: int) -> bool:
    """True if ``event`` is a ``stream.resumed`` that voids the seqs from ``expected``
    up to its own: the gap a resumed stream leaves is declared, not lost."""
    if event.type != ev.STREAM_RESUMED or event.seq < expected:
        return False
    durable = event.data.get("last_durable_seq")
    return isinstance(durable, int) and durable < expected
