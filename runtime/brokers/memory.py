"""The in-process event log: one append-only log per stream, replay and fan-out.

Delivery is batched: a subscriber that wakes takes every event available in one
slice, so one wake-up serves many events and throughput does not fall to one
scheduler round-trip per event (which is what bounds a plain queue).
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from .._events import STREAM_END, Event
from .._exceptions import StreamNotFound, SubscriberLagged

__all__ = ["EventLog", "MemoryBroker"]


class EventLog:
    """The append-only log of one stream.

    Publishing never blocks and never waits for subscribers. Memory is bounded: at
    most ``max_events`` events are retained (oldest dropped first); a subscriber that
    asks for a dropped event gets :class:`~runtime.SubscriberLagged`.

    :param max_events: retained window, in events (>= 1).
    """

    __slots__ = (
        "_base",
        "_events",
        "_wakeup",
        "closed",
        "finished_at",
        "max_events",
        "session_id",
        "stream_id",
    )

    def __init__(self, stream_id: str, session_id: str, *, max_events: int = 100_000) -> None:
        if max_events < 1:
            raise ValueError(f"invalid max_events {max_events!r}: must be >= 1")
        self.stream_id = stream_id
        self.session_id = session_id
        self.max_events = max_events
        self._events: list[Event] = []
        self._base = 0  # seq of the event before _events[0]
        self._wakeup: anyio.Event | None = None
        self.closed = False
        self.finished_at: float | None = None

    @property
    def last_seq(self) -> int:
        """The ``seq`` of the newest event (0 before the first)."""
        return self._base + len(self._events)

    @property
    def first_retained_seq(self) -> int:
        """The oldest ``seq`` still held (``last_seq + 1`` when empty)."""
        return self._base + 1

    def publish(self, type: str, data: dict[str, Any]) -> Event:
        """Append an event with the next ``seq`` and wake the subscribers.

        :raises RuntimeError: if the log was closed by ``stream.end``.
        """
        if self.closed:
            raise RuntimeError(f"stream {self.stream_id!r} has ended; cannot publish {type!r}")
        event = Event(self.last_seq + 1, self.stream_id, self.session_id, type, data, time.time())
        self.append(event)
        return event

    def append(self, event: Event) -> None:
        """Append an event built elsewhere; its ``seq`` must be ``last_seq + 1``.

        :raises ValueError: if the ``seq`` would leave a gap or repeat.
        """
        if event.seq != self.last_seq + 1:
            raise ValueError(
                f"event seq {event.seq} does not follow {self.last_seq} "
                f"in stream {self.stream_id!r}"
            )
        events = self._events
        events.append(event)
        if len(events) > self.max_events:
            # Drop in chunks so that trimming is amortised O(1) per event.
            drop = max(1, self.max_events // 8)
            del events[:drop]
            self._base += drop
        if event.type == STREAM_END:
            self.closed = True
            self.finished_at = time.monotonic()
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()

    def read_nowait(self, after_seq: int) -> list[Event]:
        """Every retained event with ``seq > after_seq`` (possibly none).

        :raises SubscriberLagged: if events after ``after_seq`` were already dropped.
        """
        start = after_seq - self._base
        if start < 0:
            raise SubscriberLagged(self.stream_id, after_seq + 1, self.first_retained_seq)
        return self._events[start:]

    async def read(self, after_seq: int) -> list[Event]:
        """Wait until there is an event with ``seq > after_seq`` and return all of them;
        ``[]`` once the stream has ended and everything was read.

        :raises SubscriberLagged: if events after ``after_seq`` were already dropped.
        """
        while True:
            batch = self.read_nowait(after_seq)
            if batch or self.closed:
                return batch
            if self._wakeup is None:
                self._wakeup = anyio.Event()
            await self._wakeup.wait()

    def events_between(self, after_seq: int, up_to_seq: int) -> list[Event]:
        """Retained events with ``after_seq < seq <= up_to_seq`` (dropped ones are skipped)."""
        start = max(0, after_seq - self._base)
        stop = max(0, up_to_seq - self._base)
        return self._events[start:stop]


class MemoryBroker:
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

    def open(self, stream_id: str, session_id: str) -> EventLog:
        """Create the log of a new stream.

        :raises ValueError: if a log with that id exists.
        """
        self.expire()
        if stream_id in self._logs:
            raise ValueError(f"stream {stream_id!r} already exists")
        log = EventLog(stream_id, session_id, max_events=self.max_events)
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
        dead = [sid for sid, log in self._logs.items() if self._expired(log, now)]
        for sid in dead:
            del self._logs[sid]
        return len(dead)

    def __len__(self) -> int:
        return len(self._logs)
