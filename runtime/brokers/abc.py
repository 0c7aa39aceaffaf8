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
from typing import Any

from .._events import Event

__all__ = ["Broker", "StreamLog"]


class StreamLog(ABC):
    """The append-only log of one stream: gapless ``seq`` from 1, ending with
    ``stream.end``, readable from any retained position by any number of readers.

    :ivar stream_id: the stream.
    :ivar session_id: its session.
    :ivar closed: True once ``stream.end`` was appended.
    """

    __slots__ = ()

    stream_id: str
    session_id: str
    closed: bool

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

    @abstractmethod
    def events_between(self, after_seq: int, up_to_seq: int) -> list[Event]:
        """Retained events with ``after_seq < seq <= up_to_seq`` (dropped ones skipped)."""

    async def flush(self) -> None:  # noqa: B027 - optional hook
        """Wait until every published event has reached the log's backend (a no-op
        for a log that lives in this process)."""


class Broker(ABC):
    """The event logs of the streams this process runs or retains.

    Finished streams stay readable for a retention period; afterwards
    :meth:`get` raises :class:`~runtime.StreamNotFound` and readers fall back to the
    store's durable events.
    """

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

    @abstractmethod
    def drop(self, stream_id: str) -> None:
        """Forget a stream's log at once (its turn never started)."""

    @abstractmethod
    def __len__(self) -> int:
        """How many logs are held (live and retained)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release the broker's resources (connections); idempotent."""
