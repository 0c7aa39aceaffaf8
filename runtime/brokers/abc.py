"""The event-log seam: :class:`Broker` (the logs of every stream) and :class:`StreamLog`
(the append-only log of one stream). The runner, subscriptions and the HTTP edge use
only these; :class:`~runtime.brokers.memory.MemoryBroker` is the in-process default and
:mod:`runtime.testing` holds the conformance checks every backend must pass.

Publishing is synchronous and never waits for subscribers, so a tight token loop costs
no scheduler round-trip per event. A backend that sends events elsewhere (a remote log)
buffers them in :meth:`StreamLog.publish` and delivers them in the background; the
runner awaits :meth:`StreamLog.flush` once the stream has ended.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from .._events import Event, event_records

__all__ = ["Broker", "StreamLog"]


class StreamLog(ABC):
    """The append-only log of one stream: gapless ``seq`` from 1, ending with
    ``stream.end``, readable from any retained position by any number of readers.

    :ivar stream_id: the stream.
    :ivar session_id: its session.
    :ivar closed: True once ``stream.end`` was appended.
    :ivar remote: True for a log another process appends to (see
        :meth:`Broker.attach`): it may die without ever ending it, so a reader must not
        wait on it forever; :meth:`publish` and :meth:`append` raise ``RuntimeError``.
    """

    __slots__ = ()

    stream_id: str
    session_id: str
    closed: bool
    remote: bool = False

    @property
    @abstractmethod
    def last_seq(self) -> int:
        """The ``seq`` of the newest event (0 before the first)."""

    @property
    @abstractmethod
    def first_retained_seq(self) -> int:
        """The oldest ``seq`` still held (``last_seq + 1`` when empty)."""

    @abstractmethod
    def publish(self, type: str, data: dict[str, Any]) -> Event:
        """Append an event with the next ``seq`` and wake the readers; never blocks.

        :raises RuntimeError: if the log was closed by ``stream.end``.
        :raises TypeError: if ``data`` is not JSON-ready; nothing is appended.
        """

    @abstractmethod
    def append(self, event: Event) -> None:
        """Append an event built elsewhere; its ``seq`` must be ``last_seq + 1``.

        :raises ValueError: if the ``seq`` would leave a gap or repeat.
        :raises TypeError: if the event's ``data`` is not JSON-ready; nothing is appended.
        """

    @abstractmethod
    def read_nowait(self, after_seq: int) -> list[Event]:
        """Every retained event with ``seq > after_seq`` (possibly none), in order.

        :raises SubscriberLagged: if events after ``after_seq`` were already dropped.
        """

    @abstractmethod
    async def read(self, after_seq: int) -> list[Event]:
        """Wait until there is an event with ``seq > after_seq`` and return every one
        available (one batch); ``[]`` once the stream has ended and all was read.
        Each caller gets its own list.

        :raises SubscriberLagged: if events after ``after_seq`` were already dropped.
        """

    async def read_within(self, after_seq: int, seconds: float) -> list[Event] | None:
        """:meth:`read`, or ``None`` if no event came for ``seconds`` (how a reader of a
        :attr:`remote` log notices a writer that may have died). This default wraps
        :meth:`read` in a timeout; a backend whose readers share one blocking read may
        check that read's timeout instead (then ``None`` may come up to ``seconds``
        late), so that 1,000 readers do not hold 1,000 timers.

        :raises SubscriberLagged: as :meth:`read`.
        """
        with anyio.move_on_after(seconds):
            return await self.read(after_seq)
        return None

    def waiter(self, after_seq: int) -> Awaitable[None] | None:
        """Something to await until an event with ``seq > after_seq`` is readable with
        :meth:`read_nowait` or the log is closed, for a reader that then reads without
        waiting; or ``None`` when this backend has no such wait (then use :meth:`read`,
        the default). A :attr:`remote` log may also be done early (its read from the
        backend timed out or failed) and then answer ``None`` until events come again,
        so that its readers use :meth:`read_within`, which notices a dead writer and
        raises the backend's error. Each call gets its own awaitable, so a cancelled
        wait leaves the others waiting. What a waiter holds across the wait is all its
        wait costs: a log that answers with an ``asyncio`` future lets 1,000 SSE
        subscribers wait with no coroutine each (docs/benchmarks.md, W5)."""
        return None

    @abstractmethod
    def events_between(self, after_seq: int, up_to_seq: int) -> list[Event]:
        """Retained events with ``after_seq < seq <= up_to_seq`` (dropped ones skipped)."""

    def records_between(self, after_seq: int, up_to_seq: int) -> list[dict[str, Any]]:
        """:meth:`events_between` as durable records (:func:`runtime._events.event_records`:
        a run of tokens is one record), for a save. A log that keeps events in columns
        overrides it to build the records without an :class:`Event` per event."""
        return event_records(self.events_between(after_seq, up_to_seq))

    async def flush(self) -> None:  # noqa: B027 - optional hook
        """Wait until every published event has reached the log's backend (a no-op
        for a log that lives in this process)."""

    def abandon(self) -> None:  # noqa: B027 - optional hook
        """Stop writing the log without ending it: its turn was suspended by a graceful
        shutdown (every event is in the store) and goes on in a later run, which
        continues the stream after a ``stream.resumed``. Readers in this process then
        drain what the log holds and stop (never wait on a writer that is gone);
        readers in other processes of a shared log notice it through the store, as
        after a crash. :meth:`publish` and :meth:`append` raise ``RuntimeError`` after
        it. A log that cannot tell its readers does nothing (the default)."""


class Broker(ABC):
    """The event logs of the streams this process runs or retains.

    Finished streams stay readable for a retention period; afterwards
    :meth:`get` raises :class:`~runtime.StreamNotFound` and readers fall back to the
    store's durable events.

    :ivar shared: True if other processes see this backend's logs (a server such as
        Redis); then :meth:`attach` finds streams they run and cancel requests reach them.
    """

    shared: bool = False

    @abstractmethod
    def open(self, stream_id: str, session_id: str, *, after_seq: int = 0) -> StreamLog:
        """Create the log of a new stream, or of a resumed one.

        :param after_seq: the seq before the log's first event (its ``last_seq`` until
            the first publish): a resumed stream continues after the seqs its earlier
            attempts may have used; readers find the earlier events in the store.
        :raises ValueError: if a log with that id exists, or ``after_seq`` is not an
            integer >= 0.
        """

    @abstractmethod
    def get(self, stream_id: str) -> StreamLog:
        """The log of a live or retained stream.

        :raises StreamNotFound: if there is none (unknown, or its retention passed).
        """

    async def attach(self, stream_id: str) -> StreamLog:
        """The log of a stream to follow: the one :meth:`get` returns, or, on a shared
        backend, a read-only view of a stream another process runs or ran (its
        :attr:`StreamLog.remote` is true).

        :raises StreamNotFound: if the backend holds no such stream.
        :raises EventLogUnavailable: if a shared backend cannot be reached.
        """
        return self.get(stream_id)

    async def request_cancel(self, stream_id: str, owner: str) -> bool:
        """Ask the process ``owner`` (a ``node_id``) to cancel ``stream_id``; returns
        whether the request reached a process listening as ``owner``. Always ``False``
        for a backend no other process shares.

        :raises EventLogUnavailable: if a shared backend cannot be reached.
        """
        return False

    async def serve_cancel_requests(self, node_id: str, handler: Callable[[str], object]) -> None:
        """Call ``handler(stream_id)`` for every cancel request sent to ``node_id``, until
        cancelled; returns at once for a backend no other process shares. A lost
        connection is retried in the background, never raised."""
        return None

    @property
    def degraded(self) -> bool:
        """True while the backend cannot be reached and events wait in a bounded
        buffer (always ``False`` for a log in this process)."""
        return False

    @abstractmethod
    def drop(self, stream_id: str) -> None:
        """Forget a stream's log at once (its turn never started)."""

    @abstractmethod
    def __len__(self) -> int:
        """How many logs are held (live and retained)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release the broker's resources (connections); idempotent."""
