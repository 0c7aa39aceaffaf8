"""The public event-log conformance suite (runtime.testing) against the in-memory
broker, and against broken brokers to show that each check catches its violation."""

from __future__ import annotations

from typing import Any

import pytest

from runtime._events import Event
from runtime.brokers.abc import StreamLog
from runtime.brokers.memory import EventLog, MemoryBroker
from runtime.testing import (
    EVENT_LOG_CHECKS,
    EventLogCheck,
    check_attach_from_another_process,
    check_readers_wait_and_all_get_every_event,
    check_retention_and_drop,
    check_subscribe_while_publishing,
    check_waiters_wake_and_cancel_alone,
    check_window_is_bounded,
    run_event_log_conformance,
)


@pytest.mark.parametrize("check", EVENT_LOG_CHECKS, ids=lambda c: c.__name__)
async def test_memory_broker(check: EventLogCheck) -> None:
    await check(MemoryBroker)


async def test_run_event_log_conformance_passes_for_the_memory_broker() -> None:
    await run_event_log_conformance(MemoryBroker)


class _BrokerOf(MemoryBroker):
    """A MemoryBroker whose streams get logs of ``log_class`` (a broken one under test)."""

    log_class: type[EventLog] = EventLog

    def open(self, stream_id: str, session_id: str) -> EventLog:
        super().open(stream_id, session_id)
        log = self._logs[stream_id] = self.log_class(stream_id, session_id)
        log._on_end = self._finished.append
        return log


class UnboundedLog(EventLog):
    __slots__ = ()

    def _trim(self) -> None:
        """Never drops anything."""


class UnboundedBroker(_BrokerOf):
    log_class = UnboundedLog


class SharedBatchLog(EventLog):
    """Hands every reader the same list: one reader's clear() empties the others'."""

    __slots__ = ("_last_batch",)

    async def read(self, after_seq: int) -> list[Event]:
        batch = await super().read(after_seq)
        cached = getattr(self, "_last_batch", None)
        if cached is not None and cached[0] == after_seq:
            return cached[1]  # type: ignore[no-any-return]
        self._last_batch = (after_seq, batch)
        return batch


class SharedBatchBroker(_BrokerOf):
    log_class = SharedBatchLog


class NeverExpires(MemoryBroker):
    def expire(self) -> int:
        return 0

    def get(self, stream_id: str) -> EventLog:
        log = self._logs.get(stream_id)
        if log is None:
            return super().get(stream_id)
        return log


class JoinLosesOne(MemoryBroker):
    """``attach`` hands out a log whose reads skip the first event of each batch of
    more than one: what a subscribe-then-replay without de-duplication loses."""

    async def attach(self, stream_id: str) -> StreamLog:
        return _Skipping(self.get(stream_id))


class _Skipping(StreamLog):
    def __init__(self, inner: StreamLog) -> None:
        self.inner = inner
        self.stream_id, self.session_id = inner.stream_id, inner.session_id

    closed = property(lambda self: self.inner.closed)  # type: ignore[assignment]
    last_seq = property(lambda self: self.inner.last_seq)
    first_retained_seq = property(lambda self: self.inner.first_retained_seq)

    def publish(self, type: str, data: dict[str, Any]) -> Event:
        return self.inner.publish(type, data)

    def append(self, event: Event) -> None:
        self.inner.append(event)

    def read_nowait(self, after_seq: int) -> list[Event]:
        return self.inner.read_nowait(after_seq)

    async def read(self, after_seq: int) -> list[Event]:
        batch = await self.inner.read(after_seq)
        return batch[1:] if len(batch) > 1 else batch

    def events_between(self, after_seq: int, up_to_seq: int) -> list[Event]:
        return self.inner.events_between(after_seq, up_to_seq)


class WaiterIgnoresPositionLog(EventLog):
    """Its waiter always waits for the next publish, even when the events it waits for
    are already there: a reader that checked before a publish would sleep past it."""

    __slots__ = ()

    def waiter(self, after_seq: int) -> Any:
        return super().waiter(self.last_seq)


class WaiterIgnoresPosition(_BrokerOf):
    log_class = WaiterIgnoresPositionLog


class SaysSharedButIsNot(MemoryBroker):
    """Claims other processes see its streams; a second broker finds none of them."""

    shared = True


BROKEN = [
    (JoinLosesOne, check_subscribe_while_publishing),
    (SaysSharedButIsNot, check_attach_from_another_process),
    (UnboundedBroker, check_window_is_bounded),
    (SharedBatchBroker, check_readers_wait_and_all_get_every_event),
    (NeverExpires, check_retention_and_drop),
    (WaiterIgnoresPosition, check_waiters_wake_and_cancel_alone),
]


@pytest.mark.parametrize(("broken", "check"), BROKEN, ids=[b.__name__ for b, _ in BROKEN])
async def test_check_catches_broken_broker(
    broken: type[MemoryBroker], check: EventLogCheck
) -> None:
    with pytest.raises(AssertionError):
        await check(broken)


# -- RedisEventLog on a real server ---------------------------------------------------


def _redis_factory() -> Any:
    from redis_server import new_prefix, redis_url

    from runtime.brokers.redis import RedisEventLog

    url, prefix = redis_url(), new_prefix()

    def factory(*, retention: float = 300.0, max_events: int = 100_000) -> RedisEventLog:
        return RedisEventLog(url, prefix=prefix, retention=retention, max_events=max_events)

    return factory


@pytest.mark.parametrize("check", EVENT_LOG_CHECKS, ids=lambda c: c.__name__)
async def test_redis_event_log(check: EventLogCheck) -> None:
    await check(_redis_factory())
