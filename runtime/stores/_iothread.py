"""A store's own I/O thread: a cheaper hop for blocking file work than anyio's pool.

``anyio.to_thread.run_sync`` costs a checkpoint, a capacity limiter, a context copy and
a generic worker hand-off on every call: about as much as the ``fdatasync`` of a
checkpoint on a small machine. :class:`IOThread` keeps one long-lived worker thread
(started on first use, told to stop by :meth:`IOThread.close`, and ending by itself
after :data:`IDLE_EXIT` seconds without work, so an unclosed store leaks no thread)
that takes jobs from a queue and hands each result back with
``loop.call_soon_threadsafe``.

It is used on asyncio only, and only while it is idle: another backend (trio), a job
submitted while one is in flight, or a closed thread go through
``anyio.to_thread.run_sync`` instead, so concurrent work (many sessions
checkpointing at once) still runs in parallel and a long compaction never delays
another session's checkpoint.

Cancellation behaves as with ``anyio.to_thread.run_sync``: the job always runs to
completion, and a cancelled caller waits for it (shielded) before the cancellation
propagates. The file work of a checkpoint is therefore never abandoned half way, and
whatever bookkeeping the job does is consistent with the disk when the caller's
session lock is released.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from queue import Empty, SimpleQueue
from typing import Any, Generic, TypeVar

import anyio
import anyio.to_thread

from .._timer import asyncio_loop

__all__ = ["IDLE_EXIT", "IOThread"]


T = TypeVar("T")

#: seconds the worker waits for a job before it ends (the next job starts a new one)
IDLE_EXIT = 10.0


class _Job(Generic[T]):
    """One call to run in the worker thread, and how its caller is woken."""

    __slots__ = ("args", "done", "error", "fn", "loop", "result", "waiter")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, fn: Callable[..., T], args: tuple[Any, ...]
    ) -> None:
        self.loop = loop
        self.fn = fn
        self.args = args
        self.result: T | None = None
        self.error: BaseException | None = None
        self.done = False  # set in the loop thread only
        self.waiter: asyncio.Future[None] = loop.create_future()


class IOThread:
    """One worker thread for blocking file work; see the module docstring.

    :param name: the thread's name (shows in py-spy and ``threading.enumerate()``).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: SimpleQueue[_Job[Any] | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards _thread against the worker's idle exit
        self._in_flight = 0  # jobs queued or running; changed in the loop thread only
        self._closed = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the worker thread (or in anyio's pool, see the module
        docstring); returns its result or raises its exception.

        The call always completes: a cancelled caller waits for it, then the
        cancellation propagates.
        """
        loop = None if self._in_flight or self._closed else asyncio_loop()
        if loop is None:
            return await anyio.to_thread.run_sync(fn, *args)
        job = _Job(loop, fn, args)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()
            self._queue.put(job)
        self._in_flight += 1
        try:
            await job.waiter
        except BaseException:
            if not job.done:
                await _wait_shielded(job)
            raise
        # take the outcome out of the job: the worker may still hold the job for a
        # moment, and the result (a whole loaded session, say) must live only as long
        # as the caller keeps it; no cycle either (the traceback's frames hold the job)
        result, error = job.result, job.error
        job.result = job.error = None
        if error is not None:
            raise error
        return result  # type: ignore[return-value]  # T when no error

    def close(self) -> None:
        """Stop the thread once the jobs already queued are done (does not block);
        later calls of :meth:`run` go through anyio's pool."""
        with self._lock:
            if not self._closed:
                self._closed = True
                if self._thread is not None:
                    self._queue.put(None)

    @property
    def running(self) -> bool:
        """True while the worker thread exists."""
        return self._thread is not None

    def _work(self) -> None:
        queue = self._queue
        while True:
            try:
                job = queue.get(timeout=IDLE_EXIT)
            except Empty:
                with self._lock:
                    if queue.empty():  # nothing was queued meanwhile: end
                        self._thread = None
                        return
                continue
            if job is None:
                with self._lock:
                    self._thread = None
                return
            try:
                job.result = job.fn(*job.args)
            except BaseException as exc:  # handed to the caller, raised there
                job.error = exc
            job.args = ()  # what the call was given (a session's messages) is not kept
            try:
                job.loop.call_soon_threadsafe(self._finish, job)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                self._in_flight -= 1
            del job  # not held while this thread waits for the next one

    def _finish(self, job: _Job[Any]) -> None:
        self._in_flight -= 1
        job.done = True
        if not job.waiter.done():
            job.waiter.set_result(None)


async def _wait_shielded(job: _Job[Any]) -> None:
    """Wait until ``job`` is done, whatever cancellation arrives meanwhile."""
    with anyio.CancelScope(shield=True):
        while not job.done:
            job.waiter = job.loop.create_future()
            try:
                await job.waiter
            except asyncio.CancelledError:
                continue  # a native task.cancel(): the caller re-raises its own afterwards
