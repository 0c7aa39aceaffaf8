"""One runtime-wide timer for the turns' checkpoint coroutines.

Each live turn's checkpoint coroutine sleeps ``checkpoint_interval`` seconds between
checks, and must wake at once when its turn ends. Done the obvious way — a
``move_on_after(interval)`` around ``stop.wait()`` per tick — every tick of every turn
builds a cancel scope (and its sets), a timer handle, two ``wait`` coroutines and a
future. They live about one interval, long enough to survive two young collections of
CPython's cyclic collector, so they are promoted and die in the old generation: with
thousands of live turns that churn is what triggers the full collections that stall
every stream (docs/benchmarks.md, W6).

:class:`Wakeups` replaces that with one queue per sleep length for the whole runtime
(sleeps of one length are due in the order they began) and a single ``loop.call_at``
handle armed for the earliest deadline. A sleeping turn holds one future, which is the
sleep itself (no coroutine), and one deque slot; its stop event (a :class:`Latch`)
resolves the same future when the turn ends, so the coroutine still exits at once.

On an event loop other than asyncio (trio), :meth:`Wakeups.sleep` falls back to
``move_on_after`` around an ``anyio.Event``: same behaviour, the per-tick cost of before.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable

import anyio

__all__ = ["Latch", "Mutex", "StopEvent", "Wakeups", "asyncio_loop"]

#: entries from which stale ones are dropped all at once (below it, when due)
_COMPACT_AT = 64

#: seconds; asyncio runs a timer this much early (``BaseEventLoop._clock_resolution``)
_RESOLUTION = time.get_clock_info("monotonic").resolution


def asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, or ``None`` on another backend (trio)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # trio: no running asyncio loop
        return None


class Latch:
    """A set-once event: :meth:`set` wakes every waiter, and it is never cleared.

    A light ``anyio.Event`` for waits that many live turns hold at once (a turn's stop
    event, a subscriber waiting for the next publish): on asyncio a waiter holds one
    future, and :meth:`wait` returns that future itself, not a coroutine, so a wait
    builds no coroutine chain, no lock and no deque for the garbage collector to walk
    and promote. On another event loop (trio) :meth:`wait` waits on an ``anyio.Event``.
    """

    __slots__ = ("_event", "_is_set", "_waiters")

    def __init__(self) -> None:
        self._is_set = False
        # one waiter is held as it is, two or more in a list: most latches (a turn's
        # stop event, a log's wake-up) have one waiter, and a list per wait would be
        # one more object for the collector to promote
        self._waiters: asyncio.Future[None] | list[asyncio.Future[None]] | None = None
        self._event: anyio.Event | None = None  # the fallback's, made on demand

    def is_set(self) -> bool:
        """Whether :meth:`set` was called."""
        return self._is_set

    def set(self) -> None:
        """Set the latch and wake every waiter. Idempotent; never blocks."""
        self._is_set = True
        waiters, self._waiters = self._waiters, None
        if isinstance(waiters, list):
            for waiter in waiters:
                if not waiter.done():  # a cancelled waiter's future is done
                    waiter.set_result(None)
        elif waiters is not None and not waiters.done():
            waiters.set_result(None)
        if self._event is not None:
            self._event.set()

    def waiters(self) -> int:
        """How many waits are pending on asyncio (cancelled ones not yet dropped count)."""
        waiters = self._waiters
        if waiters is None:
            return 0
        return len(waiters) if isinstance(waiters, list) else 1

    def wait(self) -> Awaitable[None]:
        """``await latch.wait()``: returns once the latch is set (at once if it is).
        Cancellable; a cancelled wait leaves nothing behind but a done future that the
        next :meth:`set` drops."""
        loop = asyncio_loop()
        if loop is None:
            if self._event is None:
                self._event = anyio.Event()
                if self._is_set:
                    self._event.set()
            return self._event.wait()
        waiter: asyncio.Future[None] = loop.create_future()
        if self._is_set:
            waiter.set_result(None)
        else:
            self._add(waiter)
        return waiter

    def _add(self, waiter: asyncio.Future[None]) -> None:
        waiters = self._waiters
        if waiters is None:
            self._waiters = waiter
            return
        if not isinstance(waiters, list):
            # a lone waiter already done (a timer woke or cancelled its wait) is
            # replaced: a latch waited on once per checkpoint tick keeps one future
            self._waiters = waiter if waiters.done() else [waiters, waiter]
            return
        waiters.append(waiter)
        n = len(waiters)
        if n >= 16 and n & (n - 1) == 0:  # at 16, 32, 64...: drop cancelled waits
            waiters[:] = [w for w in waiters if not w.done()]


class Mutex:
    """``async with mutex:`` one holder at a time; a light ``anyio.Lock`` for a lock
    each live turn holds (its saves) and takes about once per checkpoint.

    ``anyio.Lock`` holds a deque and, uncontended, still runs a cancel-shielded
    checkpoint per acquire (a cancel scope and a scheduler round trip: 10 % of a W6
    profile). Here a free mutex is taken without waiting; while it is held, waiters
    sleep on a :class:`Latch` made by the first of them and all wake when it is
    released, the first to run taking it (no fairness is promised). Cancelling a
    waiter leaves the mutex as it was. Works on any event loop :class:`Latch` does.
    """

    __slots__ = ("_free", "_held", "_waiting")

    def __init__(self) -> None:
        self._held = False
        self._free: Latch | None = None  # made by the first waiter, set at release
        self._waiting = 0

    def locked(self) -> bool:
        """Whether someone holds it."""
        return self._held

    def idle(self) -> bool:
        """Whether nobody holds it and nobody waits for it (woken waiters that have not
        run yet count as waiting): a mutex kept in a table may then be dropped."""
        return not self._held and not self._waiting

    async def __aenter__(self) -> None:
        while self._held:
            if self._free is None:
                self._free = Latch()
            self._waiting += 1
            try:
                await self._free.wait()
            finally:
                self._waiting -= 1
        self._held = True

    async def __aexit__(self, *exc_info: object) -> None:
        self._held = False
        free, self._free = self._free, None
        if free is not None:
            free.set()


#: A turn's stop event: set once in the runner's ``finally``; what its checkpoint
#: coroutine's :meth:`Wakeups.sleep` also returns on.
StopEvent = Latch


class Wakeups:
    """The timer: ``await wakeups.sleep(seconds, stop)`` returns after ``seconds`` or as
    soon as ``stop`` is set, whichever comes first.

    One instance serves every turn of a runtime. Sleeps of the same length are due in
    the order they began (the loop's clock only moves forward), so each length has a
    queue, two deques: the deadlines (seconds, the loop's clock) and the futures. A
    runtime sleeps a few lengths only (its checkpoint interval and the failure backoff
    multiples of it). One ``loop.call_at`` handle is armed for the earliest head, re-armed
    only when an earlier deadline arrives; its callback resolves every future due,
    skipping those of sleeps already woken or cancelled. A sleep on asyncio is its future
    alone: no coroutine, no heap entry tuple, nothing else that lives for the interval
    (each such object outlives young collections and is promoted, W6).

    Not thread-safe: use it from the event loop thread only.
    """

    def __init__(self) -> None:
        #: ``{seconds: (deadlines, futures)}``, both in the order the sleeps began
        self._queues: dict[float, tuple[deque[float], deque[asyncio.Future[None]]]] = {}
        self._entries = 0
        self._compact_at = _COMPACT_AT  # entries; doubles what compaction leaves
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = math.inf

    def __len__(self) -> int:
        """Entries not yet due: one per sleep in progress, plus some of sleeps that
        ended early (dropped when due, or all at once when the entries have doubled)."""
        return self._entries

    def sleep(self, seconds: float, stop: StopEvent) -> Awaitable[None]:
        """``await wakeups.sleep(seconds, stop)``: sleep ``seconds`` (a finite number
        >= 0) or until ``stop`` is set.

        Returns at once if ``stop`` is already set. Cancellable like any sleep: the
        entry left behind is skipped when due. On asyncio the awaitable is a future
        (the sleep's only object); on another event loop (trio), a coroutine waiting
        on ``stop`` under ``anyio.move_on_after``.

        :raises ValueError: if ``seconds`` is negative or not finite (when called).
        """
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"invalid sleep {seconds!r}: must be a finite number of seconds >= 0")
        loop = asyncio_loop()
        if loop is None:
            return _sleep_anyio(seconds, stop)
        waiter: asyncio.Future[None] = loop.create_future()
        if stop.is_set():
            waiter.set_result(None)
            return waiter
        if loop is not self._loop:  # first use, or a new loop: the old entries are void
            self._reset(loop)
        if self._entries >= self._compact_at:
            self._compact()
        queue = self._queues.get(seconds)
        if queue is None:
            queue = self._queues[seconds] = (deque(), deque())
        deadline = loop.time() + seconds
        queue[0].append(deadline)
        queue[1].append(waiter)
        self._entries += 1
        if deadline < self._armed_at:
            self._arm(loop, deadline)
        stop._add(waiter)  # set() resolves it at once; a due deadline resolves it too
        return waiter

    def _compact(self) -> None:
        """Drop the entries of sleeps that ended early (turns that ended, or were
        cancelled, with much of a long interval left): O(entries), run when the entries
        have doubled since the last compaction, so amortised O(1) per sleep."""
        for seconds, (deadlines, waiters) in list(self._queues.items()):
            kept = [(d, w) for d, w in zip(deadlines, waiters, strict=True) if not w.done()]
            if kept:
                self._queues[seconds] = (deque(d for d, _ in kept), deque(w for _, w in kept))
            else:
                del self._queues[seconds]
        self._entries = sum(len(q[0]) for q in self._queues.values())
        self._compact_at = max(_COMPACT_AT, 2 * self._entries)

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._queues.clear()
        self._entries = 0
        self._compact_at = _COMPACT_AT
        self._handle = None
        self._armed_at = math.inf
        self._loop = loop

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = loop.call_at(deadline, self._fire)
        self._armed_at = deadline

    def _fire(self) -> None:
        """Resolve every future due (the loop runs a timer up to its clock resolution
        early, so "due" allows the same), then arm for the next deadline."""
        loop = self._loop
        assert loop is not None
        self._handle = None
        self._armed_at = math.inf
        now = loop.time() + _RESOLUTION
        earliest = math.inf
        for seconds, (deadlines, waiters) in list(self._queues.items()):
            while deadlines and deadlines[0] <= now:
                deadlines.popleft()
                waiter = waiters.popleft()
                self._entries -= 1
                if not waiter.done():
                    waiter.set_result(None)
            if deadlines:
                earliest = min(earliest, deadlines[0])
            else:
                del self._queues[seconds]
        if earliest < math.inf:
            self._arm(loop, earliest)


async def _sleep_anyio(seconds: float, stop: StopEvent) -> None:
    """:meth:`Wakeups.sleep` off asyncio: the per-sleep cost of a cancel scope."""
    if stop.is_set():
        return
    with anyio.move_on_after(seconds):
        await stop.wait()
