"""One runtime-wide timer for the turns' checkpoint coroutines.

Each live turn's checkpoint coroutine sleeps ``checkpoint_interval`` seconds between
checks, and must wake at once when its turn ends. Done the obvious way — a
``move_on_after(interval)`` around ``stop.wait()`` per tick — every tick of every turn
builds a cancel scope (and its sets), a timer handle, two ``wait`` coroutines and a
future. They live about one interval, long enough to survive two young collections of
CPython's cyclic collector, so they are promoted and die in the old generation: with
thousands of live turns that churn is what triggers the full collections that stall
every stream (docs/benchmarks.md, W6).

:class:`Wakeups` replaces that with one heap of ``(deadline, n, future)`` entries for the
whole runtime and a single ``loop.call_at`` handle armed for the earliest deadline. A
sleeping turn holds one future and one heap entry; its stop event (a :class:`Latch`)
resolves the same future when the turn ends, so the coroutine still exits at once.

On an event loop other than asyncio (trio), :meth:`Wakeups.sleep` falls back to
``move_on_after`` around an ``anyio.Event``: same behaviour, the per-tick cost of before.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Awaitable

import anyio

__all__ = ["Latch", "Mutex", "StopEvent", "Wakeups", "asyncio_loop"]

#: heap size from which stale entries are dropped all at once (below it, when due)
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
            self._waiters = [waiters, waiter]
            return
        waiters.append(waiter)
        n = len(waiters)
        if n >= 16 and n & (n - 1) == 0:  # at 16, 32, 64...: drop cancelled waits
            waiters[:] = [w for w in waiters if not w.done()]

    def _discard(self, waiter: asyncio.Future[None]) -> None:
        """Forget a waiter woken by something else (a timer), so that a latch waited on
        once per tick for hours keeps no list of done futures."""
        waiters = self._waiters
        if waiters is waiter:
            self._waiters = None
        elif isinstance(waiters, list) and waiter in waiters:
            waiters.remove(waiter)


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

    One instance serves every turn of a runtime: a heap of ``(deadline, n, future)``
    (deadline in the loop's clock, seconds) and one ``loop.call_at`` handle for the
    earliest one, re-armed only when an earlier deadline arrives. The callback resolves
    every future due, skipping those of sleeps already woken or cancelled.

    Not thread-safe: use it from the event loop thread only.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()  # ties never compare futures
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = math.inf
        self._stale = 0  # entries whose sleep already ended (upper bound)

    def __len__(self) -> int:
        """Heap entries not yet due: one per sleep in progress, plus some of sleeps that
        ended early (dropped when due, or all at once when they are over half)."""
        return len(self._heap)

    async def sleep(self, seconds: float, stop: StopEvent) -> None:
        """Sleep ``seconds`` (a finite number >= 0) or until ``stop`` is set.

        Returns at once if ``stop`` is already set. Cancellable like any sleep: the
        entry left in the heap is skipped when due.

        :raises ValueError: if ``seconds`` is negative or not finite.
        """
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"invalid sleep {seconds!r}: must be a finite number of seconds >= 0")
        if stop.is_set():
            return
        loop = asyncio_loop()
        if loop is None:
            with anyio.move_on_after(seconds):
                await stop.wait()
            return
        if loop is not self._loop:  # first use, or a new loop: the old entries are void
            self._reset(loop)
        waiter: asyncio.Future[None] = loop.create_future()
        deadline = loop.time() + seconds
        heapq.heappush(self._heap, (deadline, next(self._order), waiter))
        if deadline < self._armed_at:
            self._arm(loop, deadline)
        stop._add(waiter)  # set() resolves it at once; a due deadline resolves it too
        try:
            await waiter
        finally:
            stop._discard(waiter)
            if loop.time() < deadline:  # woken early or cancelled: its entry is stale
                self._stale += 1
                if self._stale > len(self._heap) // 2 and len(self._heap) >= _COMPACT_AT:
                    self._compact()

    def _compact(self) -> None:
        """Drop the entries of sleeps that ended early (a turn that ended, with hours
        left of a long interval): O(entries), run when they are over half the heap."""
        self._heap = [entry for entry in self._heap if not entry[2].done()]
        heapq.heapify(self._heap)
        self._stale = 0

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._heap.clear()
        self._stale = 0
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
        heap = self._heap
        now = loop.time() + _RESOLUTION
        while heap and heap[0][0] <= now:
            waiter = heapq.heappop(heap)[2]
            if not waiter.done():
                waiter.set_result(None)
        if heap:
            self._arm(loop, heap[0][0])
