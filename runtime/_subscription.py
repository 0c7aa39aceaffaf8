"""Following a stream: replay what a subscriber missed, then live events.

A stream is read from the live event log while this process holds it, and from the
store's durable events otherwise (after a restart, or once the log's retention has
passed). A durable stream that never reached ``stream.end`` belonged to a process
that died: it is closed with an ``error`` ``{"type": "interrupted"}`` and
``stream.end``, never left hanging.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Self

from . import _events as ev
from ._events import Event
from ._exceptions import StreamNotFound, SubscriberLagged
from ._session import validate_session_id
from .brokers.memory import EventLog, MemoryBroker
from .stores.abc import Store

__all__ = ["Subscription", "new_stream_id", "session_of_stream"]


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


class Subscription:
    """``async for event in rt.events(stream_id, after_seq)``: events with ``seq >
    after_seq`` in order, each once, ending after ``stream.end``.

    Leaving the loop early (``break``, cancellation, a dropped connection) never
    affects the turn. Holds no task and no resource, so it needs no closing.

    :raises StreamNotFound: (from iteration) for a stream neither live, retained nor
        persisted.
    :raises SubscriberLagged: (from iteration) if the subscriber fell behind the live
        window and the store does not hold the missing events either.
    """

    def __init__(
        self,
        broker: MemoryBroker,
        store: Store,
        stream_id: str,
        after_seq: int,
        on_dead_stream: Callable[[str], Awaitable[object]] | None = None,
    ) -> None:
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
            raise ValueError(f"invalid after_seq {after_seq!r}: must be an integer >= 0")
        self._broker = broker
        self._store = store
        self.stream_id = stream_id
        self.last_seq = after_seq
        self._on_dead_stream = on_dead_stream
        self._batch: list[Event] = []
        self._pos = 0
        self._log: EventLog | None = None
        self._durable: bool | None = None  # None: not decided yet
        self._done = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        while self._pos >= len(self._batch):
            if self._done:
                raise StopAsyncIteration
            self._batch = await self._next_batch()
            self._pos = 0
        event = self._batch[self._pos]
        self._pos += 1
        self.last_seq = event.seq
        if event.type == ev.STREAM_END:
            self._done = True
            self._batch = []
        return event

    async def _next_batch(self) -> list[Event]:
        if self._durable is None:
            try:
                self._log = self._broker.get(self.stream_id)
                self._durable = False
            except StreamNotFound:
                self._durable = True
        if self._durable:
            return await self._durable_batch()
        assert self._log is not None
        try:
            batch = await self._log.read(self.last_seq)
        except SubscriberLagged:
            batch = await self._fill_gap(self._log)
        if not batch:  # ended and drained without stream.end: cannot happen, but never hang
            self._done = True
        return batch

    async def _fill_gap(self, log: EventLog) -> list[Event]:
        """Events the live window dropped, from the store's durable log."""
        first = log.first_retained_seq
        session_id = session_of_stream(self.stream_id)
        durable = await self._store.load_events(session_id, self.stream_id, self.last_seq)
        expected = self.last_seq + 1
        gap = []
        for event in durable:
            if event.seq != expected or event.seq >= first:
                break
            gap.append(event)
            expected += 1
        if expected < first:
            raise SubscriberLagged(self.stream_id, expected, first)
        return gap

    async def _durable_batch(self) -> list[Event]:
        """The whole rest of a stream this process does not hold, from the store."""
        self._done = True
        session_id = session_of_stream(self.stream_id)
        events = await self._store.load_events(session_id, self.stream_id, 0)
        if not events:
            raise StreamNotFound(f"no live, retained or persisted stream {self.stream_id!r}")
        if self._on_dead_stream is not None and events[-1].type != ev.STREAM_END:
            await self._on_dead_stream(session_id)
        out = [e for e in events if e.seq > self.last_seq]
        last = events[-1]
        if last.type != ev.STREAM_END:
            # Number the ending after whatever this subscriber already saw live: it may
            # have run ahead of the last checkpoint, and must still learn the stream died.
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
        return [e for e in out if e.seq > self.last_seq]
