"""The in-process event log: one append-only log per stream, replay and fan-out.

Delivery is batched: a subscriber that wakes takes every event available in one
slice, so one wake-up serves many events and throughput does not fall to one
scheduler round-trip per event (which is what bounds a plain queue). Readers waiting
at the same position share one read (:meth:`EventLog.read`), which is what lets one
stream feed 1,000 SSE clients (docs/benchmarks.md, W5).
"""

from __future__ import annotations

import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from .._events import STREAM_END, Event, column_records, event_records
from .._exceptions import StreamNotFound, SubscriberLagged
from .._timer import Latch, asyncio_loop
from .abc import Broker, StreamLog

__all__ = ["EventLog", "MemoryBroker"]


class _Read:
    """One read of a log in flight that other readers wait for, and what it returned
    (``None``: it failed).

    Made by the first other reader that waits for it: while a read has no company its
    entry is :data:`_ALONE`, so a stream with one subscriber makes no object per read
    (an ``anyio.Event`` per read, which looks up the async backend, cost 5 % of a W4
    pass; each object a waiting subscriber holds is one the collector promotes, W6)."""

    __slots__ = ("batch", "done")

    def __init__(self) -> None:
        self.done = Latch()
        self.batch: tuple[Event, ...] | None = None


#: the entry of a read in flight that no other reader waits for
_ALONE = _Read()


class EventLog(StreamLog):
    """The append-only log of one stream, in this process.

    Publishing never blocks and never waits for subscribers. Memory is bounded: at
    most ``max_events`` events are retained (oldest dropped first); a subscriber that
    asks for a dropped event gets :class:`~runtime.SubscriberLagged`.

    The newest events not yet delivered (at most ``2 * hot_events``) are held as
    :class:`Event` objects, which a subscriber keeping up gets as they are; the other
    retained events are held as columns (type, data, timestamp) and rebuilt when a
    late reader asks for them. An ``Event`` is an object CPython's cyclic garbage
    collector tracks, and a window of 100,000 of them (or 10,000 streams' worth), by
    surviving young collections, triggers full collections that traverse the whole
    heap: retention then cost more than the streaming itself (docs/benchmarks.md, W4
    and W6).

    :param max_events: retained window, in events (>= 1).
    :param hot_events: undelivered events beyond ``2 * hot_events`` are moved to the
        columns in chunks of ``hot_events`` (>= 1).
    """

    __slots__ = (
        "_base",
        "_cold",
        "_cool_at",
        "_delivered",
        "_hot",
        "_last",
        "_on_end",
        "_reads",
        "_wakeup",
        "closed",
        "finished_at",
        "max_events",
        "session_id",
        "stream_id",
    )

    def __init__(
        self,
        stream_id: str,
        session_id: str,
        *,
        max_events: int = 100_000,
        hot_events: int = 128,
    ) -> None:
        if isinstance(max_events, bool) or not isinstance(max_events, int) or max_events < 1:
            raise ValueError(f"invalid max_events {max_events!r}: must be an integer >= 1")
        if isinstance(hot_events, bool) or not isinstance(hot_events, int) or hot_events < 1:
            raise ValueError(f"invalid hot_events {hot_events!r}: must be an integer >= 1")
        self.stream_id = stream_id
        self.session_id = session_id
        self.max_events = max_events
        self._cool_at = 2 * hot_events
        self._cold = _Columns()  # seq _base+1 ..
        self._hot: list[Event] = []  # the events after the cold ones
        self._base = 0  # seq of the event before the oldest retained one
        self._last = 0  # seq of the newest event
        self._delivered = 0  # the furthest seq any reader has had
        self._wakeup: Latch | None = None  # light: every waiting subscriber holds one
        self._reads: dict[int, _Read] = {}
        self.closed = False
        self.finished_at: float | None = None
        self._on_end: Callable[[EventLog], object] | None = None

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the newest event (0 before the first)."""
        return self._last

    @property
    def first_retained_seq(self) -> int:
        """The oldest ``seq`` still held (``last_seq + 1`` when empty)."""
        return self._base + 1

    def __len__(self) -> int:
        """How many events are retained."""
        return self._last - self._base

    def publish(self, type: str, data: dict[str, Any]) -> Event:
        """Append an event with the next ``seq`` and wake the subscribers.

        :raises RuntimeError: if the log was closed by ``stream.end``.
        :raises TypeError: if ``data`` is not JSON-ready (orjson's rules); nothing is
            appended.
        """
        if self.closed:
            raise RuntimeError(f"stream {self.stream_id!r} has ended; cannot publish {type!r}")
        seq = self._last + 1
        if not (  # _plain_text(data), inlined: this runs once per token
            data.__class__ is dict
            and len(data) == 1
            and (text := data.get("text")).__class__ is str
            and text.isascii()
        ):
            self._check(type, seq, data)
        event = Event(seq, self.stream_id, self.session_id, type, data, time.time())
        self._push(event)
        return event

    def append(self, event: Event) -> None:
        """Append an event built elsewhere; its ``seq`` must be ``last_seq + 1``.

        The data is encoded once here, so data that cannot be sent or stored is refused
        at the call that made it, not at a later checkpoint or by a subscriber.

        :raises ValueError: if the ``seq`` would leave a gap or repeat.
        :raises TypeError: if the event's ``data`` is not JSON-ready; nothing is appended.
        """
        if event.seq != self._last + 1:
            raise ValueError(
                f"event seq {event.seq} does not follow {self._last} in stream {self.stream_id!r}"
            )
        if not _plain_text(event.data):
            self._check(event.type, event.seq, event.data)
        self._push(event)

    def abandon(self) -> None:
        """Close the log without ``stream.end`` (see :meth:`StreamLog.abandon`): its
        waiting readers wake, drain what it holds and stop."""
        self.closed = True
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()

    def _check(self, type: str, seq: int, data: dict[str, Any]) -> None:
        """:raises TypeError: if ``data`` (of event ``seq``) is not JSON-ready."""
        try:
            orjson.dumps(data)
        except TypeError as exc:
            raise TypeError(
                f"invalid data for {type!r} event {seq} of stream "
                f"{self.stream_id!r}: not JSON-ready ({exc})"
            ) from None

    def _push(self, event: Event) -> None:
        """Add a checked event whose seq is ``last_seq + 1``, and wake the subscribers."""
        last = self._last
        hot = self._hot
        delivered = self._delivered - (last - len(hot))
        if delivered > 0:
            # Read before this publish, so every subscriber woken by the last one has had
            # its chance to take them as they are: from now on they are columns, and an
            # event's object lives from publish to delivery and dies young.
            self._cold.extend(hot[:delivered])
            del hot[:delivered]
        hot.append(event)
        self._last = last + 1
        if len(hot) >= self._cool_at:
            self._cool()
        if last + 1 - self._base > self.max_events:
            self._trim()
        if event.type == STREAM_END:
            self.closed = True
            self.finished_at = time.monotonic()
            if self._on_end is not None:
                self._on_end(self)
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            loop = asyncio_loop() if wakeup.waiters() > 1 else None
            if loop is None:
                wakeup.set()
            else:
                # Several subscribers wait: wake them from a callback queued behind this
                # publisher, so that a publisher yielding mid-run (a turn yields every 64
                # tokens) finishes the run before they read, and each sends it as one
                # chunk. Woken at once, 1,000 SSE subscribers ran a wave of sends ahead
                # of the publisher and a second one after it (docs/benchmarks.md, W5).
                loop.call_soon(wakeup.set)

    def _cool(self) -> None:
        """Move the older half of the hot events to the columns."""
        hot = self._hot
        n = len(hot) // 2
        self._cold.extend(hot[:n])
        del hot[:n]

    def _trim(self) -> None:
        """Drop the oldest events, in chunks so that trimming is amortised O(1)."""
        drop = min(max(1, self.max_events // 8), len(self))
        from_cold = min(drop, len(self._cold))
        self._cold.drop(from_cold)
        del self._hot[: drop - from_cold]
        self._base += drop

    def _slice(self, start: int, stop: int) -> list[Event]:
        """Retained events with ``start < seq <= stop``, ``_base <= start <= stop <= _last``."""
        hot = self._hot
        hot_base = self._last - len(hot)  # seq before hot[0]
        if start >= hot_base:
            return hot[start - hot_base : stop - hot_base]
        cold_start = start - self._base
        cold_stop = min(stop, hot_base) - self._base
        cold, sid, session = self._cold, self.stream_id, self.session_id
        out = [
            Event(self._base + 1 + i, sid, session, cold.types[i], cold.data[i], cold.ts[i])
            for i in range(cold_start, cold_stop)
        ]
        if stop > hot_base:
            out.extend(hot[: stop - hot_base])
        return out

    def read_nowait(self, after_seq: int) -> list[Event]:
        """Every retained event with ``seq > after_seq`` (possibly none).

        :raises SubscriberLagged: if events after ``after_seq`` were already dropped.
        """
        if after_seq < self._base:
            raise SubscriberLagged(self.stream_id, after_seq + 1, self.first_retained_seq)
        if after_seq > self._delivered:
            self._delivered = after_seq
        return self._slice(after_seq, self._last) if after_seq < self._last else []

    async def read(self, after_seq: int) -> list[Event]:
        """Wait until there is an event with ``seq > after_seq`` and return all of them;
        ``[]`` once the stream has ended and everything was read.

        Shared by the readers waiting at the same position: a publish wakes every
        subscriber of a stream, and those that keep up all wait at the same ``seq``; the
        first of them reads, the others get a copy of its batch (the same
        :class:`Event` objects, so each is encoded once however many subscribers follow
        the stream). If that reader leaves before its read completes (cancelled, or
        :class:`~runtime.SubscriberLagged`), the others read for themselves. Each
        caller gets its own list.

        :raises SubscriberLagged: if events after ``after_seq`` were already dropped.
        """
        batch = self.read_nowait(after_seq)
        if batch or self.closed:  # nothing to wait for: no shared read needed
            return batch
        del batch  # an empty list: nothing of it held across the wait
        reads = self._reads
        while (pending := reads.get(after_seq)) is not None:
            if pending is _ALONE:  # the first to keep that read company
                pending = reads[after_seq] = _Read()
            await pending.done.wait()
            if pending.batch is not None:
                return list(pending.batch)
        reads[after_seq] = _ALONE
        try:
            # the wait, in this coroutine: a waiting subscriber holds no helper
            # coroutine (each is an object the collector walks while it waits)
            # (no empty batch held across the wait: one more object to promote)
            while after_seq >= self._last and not self.closed:
                if self._wakeup is None:
                    self._wakeup = Latch()
                await self._wakeup.wait()
            batch = self.read_nowait(after_seq)
            pending = reads[after_seq]
            if pending is not _ALONE:  # others wait for this read: their copy
                pending.batch = tuple(batch)
            return batch
        finally:
            pending = reads.pop(after_seq)
            if pending is not _ALONE:
                pending.done.set()

    def waiter(self, after_seq: int) -> Awaitable[None]:
        """The wait of :meth:`read` alone: on asyncio a future of its own, done at the
        next publish (or at once if an event after ``after_seq`` is already here, or
        the log is closed); the caller then reads with :meth:`read_nowait`."""
        if after_seq < self._last or self.closed:
            ready = Latch()
            ready.set()
            return ready.wait()
        if self._wakeup is None:
            self._wakeup = Latch()
        return self._wakeup.wait()

    def events_between(self, after_seq: int, up_to_seq: int) -> list[Event]:
        """Retained events with ``after_seq < seq <= up_to_seq`` (dropped ones are skipped)."""
        start = max(after_seq, self._base)
        stop = min(up_to_seq, self._last)
        return self._slice(start, stop) if start < stop else []

    def records_between(self, after_seq: int, up_to_seq: int) -> list[dict[str, Any]]:
        """:meth:`events_between` as durable records, the older ones straight from the
        columns (a run that spans the columns and the newest events is two records)."""
        start = max(after_seq, self._base)
        stop = min(up_to_seq, self._last)
        if start >= stop:
            return []
        hot = self._hot
        hot_base = self._last - len(hot)  # seq before hot[0]
        out: list[dict[str, Any]] = []
        if start < hot_base:
            c0, c1 = start - self._base, min(stop, hot_base) - self._base
            cold = self._cold
            out = column_records(
                self._base + 1 + c0,
                self.stream_id,
                self.session_id,
                cold.types[c0:c1],
                cold.data[c0:c1],
                cold.ts[c0:c1],
            )
        if stop > hot_base:
            out += event_records(hot[max(start - hot_base, 0) : stop - hot_base])
        return out


def _plain_text(data: object) -> bool:
    """Whether ``data`` is ``{"text": ASCII str}``: JSON as it is, so a token's data is
    not encoded at publish only to throw the bytes away."""
    return (
        type(data) is dict
        and len(data) == 1
        and type(text := data.get("text")) is str
        and text.isascii()
    )


class _Columns:
    """Older retained events of one stream, without their :class:`Event` objects: the
    types, data dicts and timestamps in three columns (the ``seq`` is the position).

    A data dict holding only strings and numbers (every token event's) is not tracked
    by CPython's cyclic garbage collector, so the columns cost the collector three
    objects however long they are.
    """

    __slots__ = ("data", "ts", "types")

    def __init__(self) -> None:
        self.types: list[str] = []
        self.data: list[dict[str, Any]] = []
        self.ts = array("d")

    def __len__(self) -> int:
        return len(self.types)

    def extend(self, events: list[Event]) -> None:
        self.types.extend([e.type for e in events])
        self.data.extend([e.data for e in events])
        self.ts.extend([e.ts for e in events])

    def drop(self, n: int) -> None:
        """Forget the ``n`` oldest events."""
        del self.types[:n], self.data[:n], self.ts[:n]


class MemoryBroker(Broker):
    """Registry of the event logs of this process, with retention of finished streams.

    :param retention: seconds a finished stream's log stays readable (>= 0).
    :param max_events: retained window per stream, in events.
    """

    def __init__(self, *, retention: float = 300.0, max_events: int = 100_000) -> None:
        if retention < 0:
            raise ValueError(f"invalid retention {retention!r}: must be >= 0 seconds")
        self.retention = retention
        self.max_events = max_events
        self._logs: dict[str, EventLog] = {}
        # Finished logs in the order they finished: expiry looks at the oldest only, so
        # opening a stream costs O(expired), not O(logs) (10,000 live turns, W6).
        self._finished: deque[EventLog] = deque()

    def open(self, stream_id: str, session_id: str, *, after_seq: int = 0) -> EventLog:
        """Create the log of a new stream, or of a resumed one (see :meth:`Broker.open`).

        :raises ValueError: if a log with that id exists, or for a bad ``after_seq``.
        """
        self.expire()
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
            raise ValueError(f"invalid after_seq {after_seq!r}: must be an integer >= 0")
        if stream_id in self._logs:
            raise ValueError(f"stream {stream_id!r} already exists")
        log = EventLog(stream_id, session_id, max_events=self.max_events)
        log._base = log._last = log._delivered = after_seq
        log._on_end = self._finished.append
        self._logs[stream_id] = log
        return log

    def get(self, stream_id: str) -> EventLog:
        """The log of a live or retained stream.

        :raises StreamNotFound: if there is none (unknown, or expired).
        """
        log = self._logs.get(stream_id)
        if log is None or self._expired(log, time.monotonic()):
            raise StreamNotFound(f"no live or retained stream {stream_id!r}")
        return log

    def _expired(self, log: EventLog, now: float) -> bool:
        return log.finished_at is not None and now - log.finished_at > self.retention

    def drop(self, stream_id: str) -> None:
        """Forget a stream's log at once (e.g. its turn never started)."""
        self._logs.pop(stream_id, None)

    def expire(self) -> int:
        """Forget finished logs older than the retention; returns how many."""
        now = time.monotonic()
        finished = self._finished
        n = 0
        while finished and self._expired(finished[0], now):
            log = finished.popleft()
            if self._logs.get(log.stream_id) is log:
                del self._logs[log.stream_id]
                n += 1
        return n

    def __len__(self) -> int:
        return len(self._logs)
