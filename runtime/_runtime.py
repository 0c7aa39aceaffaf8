"""``Runtime``: owns the task group, the live-stream registry, the store and the broker."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

import anyio
import anyio.abc

from . import _events as ev
from ._events import Event
from ._exceptions import (
    HistoryMismatch,
    NothingToResume,
    SessionBusy,
    SessionNotFound,
    StoreClosed,
    WriteConflict,
)
from ._json import check_json_ready
from ._resume import (
    DEAD_END_SEQS,
    RESUME_KEY,
    SEQ_WINDOW,
    disregard_after,
    new_record,
    prepare_resume,
    record_of,
    suspended,
    suspensions,
    with_record,
)
from ._runner import Agent, Turn, TurnHandle, interval_ok, run_turn
from ._session import Session, validate_session_id, validate_title
from ._subscription import QuietChecks, Subscription, new_stream_id, session_of_stream
from ._timer import Wakeups, asyncio_loop
from .brokers.abc import Broker
from .repair import is_stale, leased_elsewhere, mark_interrupted, repair
from .stores.abc import DELTA_FIELDS, Lease, RecoveryReport, SaveDelta, SessionPage, Store

if TYPE_CHECKING:
    from .routing import RouteTable

__all__ = ["Runtime"]

logger = logging.getLogger("runtime")

T = TypeVar("T")

#: tries of a rename or discard whose conditional write found that a turn ran between
#: its load and its write (each try loads again)
_IDLE_WRITE_ATTEMPTS = 3

#: seconds a cancel of a turn another process runs asks again while no process hears
#: it (the owner's listener reconnecting to a shared event log)
CANCEL_RETRY = 5.0


class Runtime:
    """Runs agent turns as tasks, streams their events, and keeps sessions durable.

    Use as ``async with Runtime(store, agent) as rt:``. Entering opens the store and,
    unless ``recover_on_start=False``, runs the maintenance step ``store.recover()``
    (report in :attr:`recovery`); leaving gives live turns
    ``shutdown_grace`` seconds to finish, then suspends or cancels the rest (see
    ``on_shutdown``) and closes the store.

    :param store: the persistence backend; the runtime opens and closes it.
    :param agent: ``async def agent(turn: Turn) -> None``.
    :param checkpoint_interval: seconds between checkpoint checks (> 0, default 1.0).
    :param stale_grace: seconds a stream with no live task *and no lease record* is
        still trusted before it is repaired as stale (default 30.0): data written by a
        writer that takes no lease. A stream with a lease is stale exactly when its
        lease has expired. Not applied to a store one process owns exclusively
        (``store.exclusive``, e.g. FileStore with its lock): there a stream this runtime
        does not run is dead at once.
    :param lease_ttl: seconds a turn's lease on its session lasts after each claim or
        renewal (default 30.0); the checkpoint coroutine renews it every third of that.
        After a crash, another process may repair the session once it has expired.
    :param node_id: this process's name in the leases it takes (default
        ``<hostname>-<pid>-<random>``).
    :param recover_on_start: run ``store.recover()`` when entering (default ``True``).
        With many processes on one shared store, run it once as a maintenance step
        (``runtime sessions recover --store …``) and start the workers with ``False``;
        :attr:`recovery` is then ``None``.
    :param final_save_timeout: seconds the shielded final save of a turn may take.
    :param shutdown_grace: seconds live turns get to finish when the runtime closes (>= 0).
    :param event_retention: seconds a finished stream's events stay readable in memory;
        afterwards they are replayed from the store (for the default broker).
    :param max_events: live window of each stream's event log, in events (for the
        default broker).
    :param broker: the event-log backend (:class:`~runtime.brokers.abc.Broker`);
        default an in-process :class:`~runtime.brokers.memory.MemoryBroker` built from
        ``event_retention`` and ``max_events``. The runtime closes it.
    :param route_table: a gateway :class:`~runtime.routing.RouteTable` to prune in the
        background: at once, then every ``route_prune_interval`` seconds (default one
        hour), removing routes not updated for ``route_max_age_days`` days (``<= 0``
        disables) unless suspended or their session has a live stream. Only routes are
        removed, never sessions.
    :param resume: what happens to a turn whose process stopped (a crash, a kill, a
        lost node). ``"manual"`` (default, the behaviour before resume existed): it is
        closed with an ``interrupted`` marker when next read, and stays resumable by
        :meth:`resume` until a new turn starts or :meth:`discard` is called. ``"auto"``:
        the runtime resumes it by itself: at start-up (every session left with a turn
        record), whenever a read finds it stale, and, on a store shared by several
        processes, by a sweep every ``lease_ttl / 2`` seconds once its lease expired
        (a turn a shutdown suspended has no lease to wait out, nor a backoff).
    :param on_shutdown: what leaving the runtime does to a turn still live after
        ``shutdown_grace``. ``"suspend"`` (the default with ``resume="auto"``): the
        agent is cancelled and the turn kept for a resume, as a crash would leave it
        but with nothing lost since the last checkpoint: everything it streamed and
        every event are saved, tool calls still running stay open (the resumed turn
        settles them through the tool ledger), its lease is given up so another
        process may resume it at once, and its stream is not ended (readers elsewhere
        see ``stream.resumed`` when it goes on). A suspension is not counted against
        ``max_resume_attempts``. ``"cancel"`` (the default with ``resume="manual"``):
        the turn ends as :meth:`cancel` ends it (``cancelled``, partial output kept).
        A turn that cannot be suspended (its save fails) is cancelled.
    :param max_resume_attempts: resumes per turn after a crash (>= 0, default 3); a
        turn that would need one more ends with ``error``
        ``{"type": "resume_exhausted"}``, keeping all it produced. The count is durable
        (in the session), so it holds across crashes.
    :param resume_backoff: seconds before an automatic resume; attempt ``n`` waits
        ``resume_backoff * 2 ** (n - 1)`` seconds, at most 60 (default 1.0), so a turn
        that kills its process at once does not spin. A reader of the stream that finds
        it dead resumes it at once.
    :raises ValueError: for a bad interval or window, naming the parameter.
    """

    def __init__(
        self,
        store: Store,
        agent: Agent,
        *,
        checkpoint_interval: float = 1.0,
        stale_grace: float = 30.0,
        final_save_timeout: float = 30.0,
        shutdown_grace: float = 10.0,
        event_retention: float = 300.0,
        max_events: int = 100_000,
        route_table: RouteTable | None = None,
        route_prune_interval: float = 3600.0,
        route_max_age_days: int = 90,
        broker: Broker | None = None,
        lease_ttl: float = 30.0,
        node_id: str | None = None,
        recover_on_start: bool = True,
        resume: Literal["manual", "auto"] = "manual",
        max_resume_attempts: int = 3,
        resume_backoff: float = 1.0,
        on_shutdown: Literal["suspend", "cancel"] | None = None,
    ) -> None:
        if not callable(agent):
            raise TypeError(f"agent must be an async callable, not {agent!r}")
        self.store = store
        self.agent = agent
        self.checkpoint_interval = interval_ok(checkpoint_interval, "checkpoint_interval")
        self.stale_grace = (
            float(stale_grace) if stale_grace == 0 else interval_ok(stale_grace, "stale_grace")
        )
        self.final_save_timeout = interval_ok(final_save_timeout, "final_save_timeout")
        if shutdown_grace < 0:
            raise ValueError(f"invalid shutdown_grace {shutdown_grace!r}: must be >= 0 seconds")
        self.shutdown_grace = float(shutdown_grace)
        self.lease_ttl = interval_ok(lease_ttl, "lease_ttl")
        self.node_id = node_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if broker is None:
            from .brokers.memory import MemoryBroker  # the default backend

            broker = MemoryBroker(retention=event_retention, max_events=max_events)
        self.broker: Broker = broker
        self.recovery: RecoveryReport | None = None
        self.recover_on_start = recover_on_start
        self._live: dict[str, TurnHandle] = {}  # stream_id -> handle
        self._turn_tasks: set[asyncio.Task[None]] = set()  # asyncio: each turn's task
        self._wakeups = Wakeups()  # every turn's checkpoint coroutine sleeps on it
        self._quiet_checks = QuietChecks()  # one store check per quiet remote stream
        self._busy: dict[str, str] = {}  # session_id -> stream_id, from start_turn on
        self._tg: anyio.abc.TaskGroup | None = None
        self._closed = False
        self.route_table = route_table
        self.route_prune_interval = interval_ok(route_prune_interval, "route_prune_interval")
        if (
            isinstance(route_max_age_days, bool)
            or not isinstance(route_max_age_days, int | float)
            or route_max_age_days != route_max_age_days  # NaN
        ):
            raise ValueError(
                f"invalid route_max_age_days {route_max_age_days!r}: must be a number of days"
            )
        self.route_max_age_days = route_max_age_days
        self._background: anyio.CancelScope | None = None
        if resume not in ("manual", "auto"):
            raise ValueError(f"invalid resume {resume!r}: must be 'manual' or 'auto'")
        self.resume_policy: Literal["manual", "auto"] = resume
        if (
            isinstance(max_resume_attempts, bool)
            or not isinstance(max_resume_attempts, int)
            or max_resume_attempts < 0
        ):
            raise ValueError(
                f"invalid max_resume_attempts {max_resume_attempts!r}: must be an integer >= 0"
            )
        self.max_resume_attempts = max_resume_attempts
        self.resume_backoff = interval_ok(resume_backoff, "resume_backoff")
        if on_shutdown is None:
            on_shutdown = "suspend" if resume == "auto" else "cancel"
        elif on_shutdown not in ("suspend", "cancel"):
            raise ValueError(
                f"invalid on_shutdown {on_shutdown!r}: must be 'suspend', 'cancel' or None"
            )
        self.on_shutdown: Literal["suspend", "cancel"] = on_shutdown
        self._scheduled: set[str] = set()  # sessions an automatic resume waits for
        self._sweep_scope: anyio.CancelScope | None = None
        self._listener: anyio.CancelScope | None = None

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between entering and leaving the ``async with`` block."""
        return self._tg is not None

    async def __aenter__(self) -> Self:
        if self._closed or self._tg is not None:
            raise RuntimeError("a Runtime can be entered once")
        await self.store.open()
        try:
            if self.recover_on_start:
                self.recovery = await self.store.recover()
                if self.recovery["restored"] or self.recovery["orphaned_backups"]:
                    logger.warning("store recovery: %s", self.recovery)
            self._background = anyio.CancelScope()  # needs a running event loop
            self._sweep_scope = anyio.CancelScope()
            self._listener = anyio.CancelScope()
            tg = anyio.create_task_group()
            await tg.__aenter__()
        except BaseException:
            await self.store.aclose()
            raise
        self._tg = tg
        if self.route_table is not None:
            tg.start_soon(self._prune_routes, self.route_table)
        if self.resume_policy == "auto":
            tg.start_soon(self._resume_sweep)
        if self.broker.shared:
            tg.start_soon(self._serve_cancel_requests)
        return self

    async def _serve_cancel_requests(self) -> None:
        """Cancel requests other processes send through the event log (``rt.cancel``
        there, for a turn this process runs)."""

        def cancel_local(stream_id: str) -> None:
            handle = self._live.get(stream_id)
            if handle is not None:
                handle.cancel()

        assert self._listener is not None
        with self._listener:
            await self.broker.serve_cancel_requests(self.node_id, cancel_local)

    async def _prune_routes(self, table: RouteTable) -> None:
        from .routing import prune_periodically

        async def has_live_stream(session_key: str) -> bool:
            entry = await table.get(session_key)
            return entry is not None and entry.session_id in self._busy

        assert self._background is not None
        with self._background:
            await prune_periodically(
                table,
                interval=self.route_prune_interval,
                max_age_days=self.route_max_age_days,
                has_active_processes=has_live_stream,
            )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        tg = self._tg
        assert tg is not None, "Runtime was not entered"
        try:
            with anyio.CancelScope(shield=True):
                await self._drain(self.shutdown_grace if exc is None else 0.0)
                if self._turn_tasks:  # ended (finished is set): let each task return
                    await asyncio.wait(list(self._turn_tasks))
            if self._background is not None:
                self._background.cancel()
            if self._sweep_scope is not None:
                self._sweep_scope.cancel()
            if self._listener is not None:
                self._listener.cancel()
            try:
                return await tg.__aexit__(exc_type, exc, tb)
            except BaseExceptionGroup as group:
                # The task group wraps the body's own exception; let it propagate bare
                # (``except SessionNotFound`` around ``async with Runtime`` must work).
                if exc is not None and len(group.exceptions) == 1 and group.exceptions[0] is exc:
                    return False
                raise
        finally:
            self._tg = None
            self._closed = True
            with anyio.CancelScope(shield=True):
                try:
                    await self.broker.aclose()
                finally:
                    await self.store.aclose()

    async def _drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for live turns, then suspend or cancel the rest
        (``on_shutdown``) and await them."""
        with anyio.move_on_after(grace):
            for handle in list(self._live.values()):
                await handle.finished.wait()
        for handle in list(self._live.values()):
            if self.on_shutdown == "suspend":
                handle.suspend()
            else:
                handle.cancel()
        for handle in list(self._live.values()):
            await handle.finished.wait()

    async def _start(self, tg: anyio.abc.TaskGroup, turn: Turn, handle: TurnHandle) -> None:
        """Start a turn's task. On asyncio a bare task: one started by
        ``TaskGroup.start`` carries anyio's task handle, its cancel scope, a finished
        event and a start future (~20 GC-tracked objects) for as long as the turn
        lives, and with thousands of live turns what they hold is what every full
        collection walks (docs/benchmarks.md, W6). Nothing is lost by it: a turn ends
        by its own cancel scope (``TurnHandle.cancel``, which shutdown calls for every
        live turn before waiting for their tasks), handles every error of the agent
        and the store itself, and a bug escaping it is logged. On trio the turn runs in
        the runtime's task group."""
        loop = asyncio_loop()
        if loop is None:
            await tg.start(self._run, turn, handle)
            return
        task = loop.create_task(self._run(turn, handle))
        self._turn_tasks.add(task)
        task.add_done_callback(self._turn_task_done)

    def _turn_task_done(self, task: asyncio.Task[None]) -> None:
        self._turn_tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("turn task %s failed", task.get_name(), exc_info=exc)

    def _task_group(self) -> anyio.abc.TaskGroup:
        if self._tg is None:
            raise StoreClosed("the runtime is not running; use 'async with Runtime(...)'")
        return self._tg

    # -- sessions -----------------------------------------------------------------------

    def new_session(self, **fields: Any) -> Session:
        """A new session, kept in memory until its first turn (no file, not listed).

        :param fields: :class:`Session` fields, e.g. ``title="..."``.
        :raises InvalidSessionId: for a bad ``session_id``.
        """
        self._task_group()
        return self.store.new_session(**fields)

    async def create_session(self, **fields: Any) -> Session:
        """A new session like :meth:`new_session`, also made fetchable and startable by
        every process sharing the store (``store.shared``), still with no durable row
        or file before its first turn (see :meth:`Store.share_new_session`).

        :param fields: :class:`Session` fields, e.g. ``title="..."``.
        :raises InvalidSessionId: for a bad ``session_id``.
        :raises StoreError: if the store fails to share it.
        """
        session = self.new_session(**fields)
        await self.store.share_new_session(session)
        return session

    async def get_session(self, session_id: str, *, metadata_only: bool = False) -> Session:
        """The session (full, or ``metadata_only``), after repairing a stale stream.

        :raises InvalidSessionId: for a bad id, before any I/O.
        :raises SessionNotFound: if there is no such session.
        """
        if not metadata_only:  # the full load is also the one a repair needs
            full = await self.store.load(session_id)
            if await self._is_stale(full):
                await self._repair(full)
            return full
        meta = await self.store.load_metadata(session_id)
        repaired = await self._repair_if_stale(meta)
        if repaired is not None:
            return Session.from_dict(repaired.meta_dict(), metadata_only=True)
        return meta

    async def session_status(self, session_id: str) -> dict[str, Any]:
        """``{active_stream_id, live, pending_user_message, pending_started_at,
        interrupted}`` (seconds since the epoch), after repairing a stale stream. ``live``
        is true while a task of this runtime runs the stream or another process holds its
        lease. ``interrupted`` is ``None``, or, for a last turn whose process stopped and
        that can be resumed (:meth:`resume`) or discarded (:meth:`discard`),
        ``{stream_id, attempt, attempts_left}`` (``attempt``: resumes it had so far;
        ``attempts_left``: resumes left after a crash, suspensions not counted).

        :raises InvalidSessionId: for a bad id.
        :raises SessionNotFound: if there is no such session.
        """
        s = await self.get_session(session_id, metadata_only=True)
        live = s.active_stream_id is not None and (
            s.active_stream_id in self._live or await leased_elsewhere(self.store, session_id)
        )
        record = record_of(s)
        interrupted = None
        if record is not None and s.active_stream_id is None:
            interrupted = {
                "stream_id": record["stream_id"],
                "attempt": record["attempt"],
                "attempts_left": max(
                    0, self.max_resume_attempts - record["attempt"] + suspensions(record)
                ),
            }
        return {
            "active_stream_id": s.active_stream_id,
            "live": live,
            "pending_user_message": s.pending_user_message,
            "pending_started_at": s.pending_started_at,
            "interrupted": interrupted,
        }

    async def list_sessions(self, *, limit: int = 50, cursor: str | None = None) -> SessionPage:
        """A page of sessions (see :meth:`Store.list_sessions`)."""
        return await self.store.list_sessions(limit=limit, cursor=cursor)

    async def delete_session(self, session_id: str) -> None:
        """Delete a session that has no live stream.

        :raises SessionBusy: while a live stream owns it (cancel it first).
        :raises SessionNotFound: if there is no such session.
        """
        validate_session_id(session_id)
        busy = self._busy.get(session_id)
        if busy is not None:
            raise SessionBusy(session_id, busy)
        await self.store.delete(session_id)

    async def rename_session(self, session_id: str, title: str) -> Session:
        """Set a session's title and save it; returns the session (metadata only).

        :raises InvalidSessionId: for a bad id, before any I/O.
        :raises ValueError: for a title that is empty, over 200 characters or holds a
            control character.
        :raises SessionBusy: while a live stream owns it (its final save would write
            the title the turn started with), also one that started here or on another
            node while the rename ran; rename it after the turn.
        :raises SessionNotFound: if there is no such session.
        """
        validate_session_id(session_id)
        validate_title(title)

        async def attempt() -> Session:
            session = await self.get_session(session_id)
            if session.active_stream_id is not None:  # a live stream of another node
                raise SessionBusy(session_id, session.active_stream_id)
            session.title = title
            await self._save_idle(session, frozenset({"title"}))
            return session

        session = await self._write_idle(session_id, attempt)
        return Session.from_dict(session.meta_dict(), metadata_only=True)

    async def _write_idle(self, session_id: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """``await attempt()`` (a load, its checks and :meth:`_save_idle`), again while
        its conditional write finds that a turn ran between its load and its write, up
        to ``_IDLE_WRITE_ATTEMPTS`` tries (then that :class:`WriteConflict`); refused
        with :class:`SessionBusy` at once while a turn of this process starts or runs."""
        for tries in range(1, _IDLE_WRITE_ATTEMPTS + 1):
            busy = self._busy.get(session_id)
            if busy is not None:
                raise SessionBusy(session_id, busy)
            try:
                return await attempt()
            except WriteConflict:
                if tries == _IDLE_WRITE_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _save_idle(
        self, session: Session, fields: frozenset[str], *, touch_updated_at: bool = True
    ) -> None:
        """Save ``fields`` of a fully loaded session that no turn owns, as one
        conditional write rather than a check then a write: it takes the session's lease
        if free and frees it in the same write (a turn claimed in between, here or on
        another node: :class:`SessionBusy`), and holds only if the stored message count
        is still the loaded one (a turn ran in between: :class:`WriteConflict`), so it
        never overwrites a turn's state with the older one it loaded."""
        n = len(session.messages)
        await self.store.save(
            session,
            touch_updated_at=touch_updated_at,
            lease=self._new_lease(),
            lease_mode="repair",
            delta=SaveDelta(n, n, fields),
        )

    async def session_streams(self, session_id: str) -> list[dict[str, Any]]:
        """The streams (turns) of a session, oldest first: ``{stream_id, user_message,
        started_at, live}`` (``started_at`` in epoch seconds), read from the stored
        transcript, where each turn's user message carries its ``stream_id``. Turns
        stored before user messages carried it are not listed. Follow one with
        :meth:`events`.

        :raises InvalidSessionId: for a bad id, before any I/O.
        :raises SessionNotFound: if there is no such session.
        """
        session = await self.get_session(session_id)
        return [
            {
                "stream_id": m["stream_id"],
                "user_message": m.get("content"),
                "started_at": m.get("timestamp"),
                "live": m["stream_id"] in self._live,
            }
            for m in session.messages
            if m.get("role") == "user" and isinstance(m.get("stream_id"), str)
        ]

    # -- stale stream repair ----------------------------------------------------------------

    def is_live(self, stream_id: str) -> bool:
        """True while a task of this runtime runs the stream."""
        return stream_id in self._live

    async def _is_stale(self, s: Session, *, starting: bool = False) -> bool:
        """True if ``s`` names a stream no process runs any more (see
        :func:`runtime.repair.is_stale`).

        :param starting: called by ``start_turn`` itself, whose own busy mark does not
            count as an owner.
        """
        if not starting and s.session_id in self._busy:  # a start_turn is under way
            return False
        return await is_stale(self.store, s, running=self._live, stale_grace=self.stale_grace)

    def _new_lease(self) -> Lease:
        return Lease(self.node_id, uuid.uuid4().hex, self.lease_ttl)

    async def _repair_if_stale(self, meta: Session) -> Session | None:
        """Repair a stale stream through a FULL load (see :func:`runtime.repair.repair`);
        returns the repaired session, or ``None`` if nothing was stale."""
        if not await self._is_stale(meta):
            return None
        full = await self.store.load(meta.session_id)
        if not await self._is_stale(full):
            return None
        if not await self._repair(full):
            return await self.store.load(meta.session_id)
        return full

    async def _repair(self, full: Session) -> bool:
        if self.resume_policy == "auto" and record_of(full, full.active_stream_id) is not None:
            try:
                await self.resume(full.session_id)
                return True
            except SessionBusy:
                return False
            except NothingToResume:
                pass
        return await repair(self.store, full, owner=self.node_id, ttl=self.lease_ttl)

    async def _repair_session(self, session_id: str) -> None:
        await self._repair_if_stale(await self.store.load_metadata(session_id))

    # -- turns --------------------------------------------------------------------------

    async def start_turn(
        self,
        session_id: str,
        text: str,
        *,
        metadata: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        rewind_to: int | None = None,
    ) -> str:
        """Start a turn: save the pending fields (the session's first write if it is
        new), then run the agent in a task. Returns the ``stream_id`` once the stream
        has started.

        :param metadata: per-turn JSON object for the agent (:attr:`Turn.metadata`),
            e.g. what a front end sends along with the message; recorded in the
            ``stream.started`` event.
        :param config: per-turn settings for the agent (:attr:`Turn.config`), e.g. a
            model name or temperature; not recorded.
        :param rewind_to: keep only the first ``rewind_to`` messages of the session (as
            :meth:`get_session` returns them) and answer ``text`` after them: a chat UI's
            *regenerate* (the last user message again, its old reply dropped) or *edit*
            (a changed user message, everything after it dropped). The dropped messages
            go in the turn's first write, which claims the session, and for good: the
            save discards the session's backup (``Store.save(discard_backup=True)``), so
            ``recover()`` does not bring them back. ``None``: keep every message.

        :raises InvalidSessionId: for a bad id, before any I/O.
        :raises ValueError: if ``text`` is not a non-empty string, or ``metadata`` or
            ``config`` is neither a dict nor ``None``, or ``rewind_to`` is neither an
            integer >= 0 nor ``None``.
        :raises HistoryMismatch: if ``rewind_to`` exceeds the session's message count
            (HTTP 409); nothing was written.
        :raises TypeError: if ``metadata`` does not encode as plain JSON.
        :raises SessionNotFound: if there is no such session.
        :raises SessionBusy: while a live stream owns the session (HTTP 409).
        """
        validate_session_id(session_id)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"invalid message {text!r}: must be a non-empty string")
        for name, value in (("metadata", metadata), ("config", config)):
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"invalid {name} {value!r}: must be a dict or None")
        if rewind_to is not None and (
            isinstance(rewind_to, bool) or not isinstance(rewind_to, int) or rewind_to < 0
        ):
            raise ValueError(f"invalid rewind_to {rewind_to!r}: must be an integer >= 0 or None")
        if metadata:
            check_json_ready(metadata, "metadata")  # it is recorded in stream.started
        tg = self._task_group()
        if session_id in self._busy:
            raise SessionBusy(session_id, self._busy[session_id])
        stream_id = new_stream_id(session_id)
        self._busy[session_id] = stream_id
        try:
            session = await self.store.load(session_id)
            loaded = len(session.messages)
            stale = await self._is_stale(session, starting=True)
            if session.active_stream_id is not None and not stale:
                raise SessionBusy(session_id, session.active_stream_id)
            if session.active_stream_id is not None:
                mark_interrupted(session)
            if rewind_to is not None:
                if rewind_to > len(session.messages):
                    raise HistoryMismatch(
                        session_id,
                        f"cannot rewind to message {rewind_to}: the session has "
                        f"{len(session.messages)} messages",
                    )
                del session.messages[rewind_to:]
            history = list(session.messages)
            now = time.time()
            session.active_stream_id = stream_id
            session.pending_user_message = text
            session.pending_started_at = now
            log = self.broker.open(stream_id, session_id)
            started_data: dict[str, Any] = {"user_message": text, "pending_started_at": now}
            if metadata:
                started_data["metadata"] = metadata
            started = log.publish(ev.STREAM_STARTED, started_data)
            # The turn record: what a resume needs, and the seqs this attempt may use.
            with_record(session, new_record(stream_id, 0, started.seq + SEQ_WINDOW, config))
            lease = self._new_lease()
            try:
                # Claims the lease in the same write: one writer per session, also
                # across processes (SessionBusy if another holds an unexpired lease).
                await self._claim(
                    session,
                    loaded,
                    events=[started],
                    lease=lease,
                    discard_backup=rewind_to is not None,
                )
            except BaseException:
                self.broker.drop(stream_id)
                raise
            # The user message is part of the running transcript from here on, so that
            # checkpoints persist it; repair will not add it twice.
            session.messages.append(
                {"role": "user", "content": text, "timestamp": now, "stream_id": stream_id}
            )
            handle = TurnHandle(session_id, stream_id, log, lease)
            turn = Turn(
                session,
                log,
                text,
                history,
                metadata=metadata,
                config=config,
                store=self.store,
                lease=lease,
            )
            turn._claimed = len(history)  # the claim saved the messages before the user's
            self._live[stream_id] = handle
            try:
                await self._start(tg, turn, handle)
            except BaseException:
                self._live.pop(stream_id, None)
                raise
        except BaseException:
            if self._busy.get(session_id) == stream_id:
                del self._busy[session_id]
            raise
        return stream_id

    async def _claim(self, session: Session, loaded: int, **save: Any) -> None:
        """The claim of a turn's start: the session's fields and the messages after the
        first ``loaded`` ones, which are as :meth:`Store.load` gave them (a repair only
        appends, a rewind only cuts), so a shared store writes O(new data), not the whole
        history again. If the store holds another count (a session never saved, or a
        writer whose lease had expired appended since the load), the whole session."""
        delta = SaveDelta(loaded, min(loaded, len(session.messages)), DELTA_FIELDS)
        try:
            await self.store.save(session, lease_mode="claim", delta=delta, **save)
        except WriteConflict:
            await self.store.save(session, lease_mode="claim", **save)

    async def resume(self, session_id: str, *, config: dict[str, Any] | None = None) -> str:
        """Continue the session's interrupted turn as the next attempt of the SAME
        stream; returns its ``stream_id`` once the stream has resumed.

        The agent is called again (``turn.resumed`` = the attempt number) with the
        turn's durable history: the checkpointed transcript plus the tool calls the
        ledger shows completed after the last checkpoint; the unfinished text is
        dropped and streamed again. The stream goes on with ``stream.resumed``
        (:class:`~runtime._events.StreamResumedData`) numbered after every seq the dead
        attempt may have used. A turn that has had ``max_resume_attempts`` resumes
        already is ended instead with ``error`` ``{"type": "resume_exhausted",
        "attempts"}`` and ``stream.end`` (outcome ``error``), everything kept.

        :param config: per-turn settings for the agent; default the ones the turn
            started with (recorded if JSON-ready, credentials redacted by the store).
        :raises InvalidSessionId: for a bad id, before any I/O.
        :raises ValueError: if ``config`` is neither a dict nor ``None``.
        :raises SessionNotFound: if there is no such session.
        :raises SessionBusy: while the turn (or another) is live, here or in another
            process holding the lease (HTTP 409 ``session_busy``).
        :raises NothingToResume: if the last turn is not an interrupted one (HTTP 409
            ``nothing_to_resume``).
        """
        validate_session_id(session_id)
        if config is not None and not isinstance(config, dict):
            raise ValueError(f"invalid config {config!r}: must be a dict or None")
        tg = self._task_group()
        if session_id in self._busy:
            raise SessionBusy(session_id, self._busy[session_id])
        self._busy[session_id] = "(resuming)"
        try:
            return await self._resume(tg, session_id, config)
        finally:
            if self._busy.get(session_id) == "(resuming)":
                del self._busy[session_id]

    async def _resume(
        self, tg: anyio.abc.TaskGroup, session_id: str, config: dict[str, Any] | None
    ) -> str:
        session = await self.store.load(session_id)
        stream_id, record = await self._interrupted(session)
        loaded = len(session.messages)  # as stored: with a repair's marker, a checkpointed draft
        events = await self.store.load_events(session_id, stream_id, 0)
        if events and events[-1].type == ev.STREAM_END:
            raise NothingToResume(session_id, f"stream {stream_id!r} has ended")
        last_durable = events[-1].seq if events else 0
        # after every seq the dead attempt may have published, and the made-up ending
        # a reader of the dead stream may have been shown
        first = max(record["seq_reserved"], last_durable) + DEAD_END_SEQS + 1
        attempt = record["attempt"] + 1
        suspended = suspensions(record)
        lease = self._new_lease()
        ledger = self.store.supports_tool_ledger
        records = await self.store.tool_calls(session_id, stream_id) if ledger else []
        if attempt - suspended > self.max_resume_attempts:
            prepare_resume(session, stream_id, events, records, final=True)
            # the resumes it had after crashes (those after a suspension not counted)
            await self._exhaust(session, stream_id, record["attempt"] - suspended, first, lease)
            return stream_id
        plan = prepare_resume(session, stream_id, events, records)
        started = next((e for e in events if e.type == ev.STREAM_STARTED), None)
        turn_metadata = started.data.get("metadata") if started is not None else None
        if config is None:
            config = record.get("config")
        session.active_stream_id = stream_id
        session.pending_user_message = plan.user_message
        if session.pending_started_at is None and started is not None:
            session.pending_started_at = started.data.get("pending_started_at")
        record = new_record(stream_id, attempt, first + SEQ_WINDOW, config, suspended=suspended)
        with_record(session, record)
        self.broker.drop(stream_id)  # a retained log of an earlier attempt
        log = self.broker.open(stream_id, session_id, after_seq=first - 1)
        resumed: ev.StreamResumedData = {
            "attempt": attempt,
            "last_durable_seq": last_durable,
            "disregard_after": disregard_after(events),
            "reason": "process_restart",
        }
        log.publish(ev.STREAM_RESUMED, dict(resumed))
        user_at = next(
            i
            for i in range(len(session.messages) - 1, -1, -1)
            if session.messages[i].get("role") == "user"
            and session.messages[i].get("stream_id") == stream_id
        )
        handle = TurnHandle(session_id, stream_id, log, lease)
        turn = Turn(
            session,
            log,
            plan.user_message,
            session.messages[:user_at],
            metadata=turn_metadata if isinstance(turn_metadata, dict) else None,
            config=config,
            store=self.store,
            lease=lease,
            attempt=attempt,
        )
        # The tool events the durable log lacks are published now, and saved with the
        # claim: the turn's checkpoints start after them.
        turn._resume_from(plan, records)
        self._busy[session_id] = stream_id
        try:
            events = log.events_between(first - 1, log.last_seq)
            # Dropping the dead attempt's draft (and a repair's marker) is meant: no backup,
            # or recover() would put the interrupted state back over the finished turn.
            await self.store.save(
                session,
                events=events,
                lease=lease,
                lease_mode="claim",
                discard_backup=len(session.messages) < loaded,
            )
        except BaseException:
            self.broker.drop(stream_id)
            if self._busy.get(session_id) == stream_id:
                del self._busy[session_id]
            raise
        turn._claimed = len(session.messages)
        self._live[stream_id] = handle
        try:
            await self._start(tg, turn, handle)
        except BaseException:
            self._live.pop(stream_id, None)
            if self._busy.get(session_id) == stream_id:
                del self._busy[session_id]
            raise
        logger.warning("resumed stream %s (attempt %d)", stream_id, attempt)
        return stream_id

    async def _interrupted(self, session: Session) -> tuple[str, dict[str, Any]]:
        """The interrupted turn of a fully loaded session: (stream id, turn record).

        :raises SessionBusy: if its stream is live (here or in another process).
        :raises NothingToResume: if there is none.
        """
        session_id = session.session_id
        record = record_of(session)
        active = session.active_stream_id
        if active is not None:
            if active in self._live or not await self._is_stale(session, starting=True):
                raise SessionBusy(session_id, active)
            if record is None or record["stream_id"] != active:
                raise NothingToResume(
                    session_id, f"stream {active!r} was started without a resume record"
                )
            return active, record
        if record is None:
            raise NothingToResume(session_id, "its last turn ended")
        last = session.messages[-1] if session.messages else {}
        if last.get("type") != "interrupted" or last.get("stream_id") != record["stream_id"]:
            raise NothingToResume(session_id, "its last turn ended")
        return record["stream_id"], record

    async def _exhaust(
        self, session: Session, stream_id: str, attempts: int, first: int, lease: Lease
    ) -> None:
        """End a turn that has had its resumes: the transcript closed as a repair does
        (its marker typed ``resume_exhausted``), ``error`` and ``stream.end`` durable."""
        if session.active_stream_id is not None:
            mark_interrupted(session)
        marker = session.messages[-1]
        message = (
            f"The turn was interrupted again after {attempts} resume(s) and is not resumed "
            "any more; what it produced is kept."
        )
        marker.update(type="resume_exhausted", content=message, resume_attempts=attempts)
        with_record(session, None)
        ts = time.time()
        data = {"type": "resume_exhausted", "attempts": attempts, "message": message}
        sid = session.session_id
        tail = [
            Event(first, stream_id, sid, ev.ERROR, data, ts),
            Event(first + 1, stream_id, sid, ev.STREAM_END, {"outcome": "error"}, ts),
        ]
        await self.store.save(
            session, events=tail, lease=lease, lease_mode="repair", touch_updated_at=False
        )
        self.broker.drop(stream_id)
        logger.error("stream %s not resumed: %d resumes already", stream_id, attempts)

    async def discard(self, session_id: str) -> bool:
        """Give up the session's interrupted turn: it stays closed by its
        ``interrupted`` marker and is no longer resumable (a new turn discards it too).
        A stale stream is repaired first. Returns ``False`` if there was nothing to
        discard.

        :raises InvalidSessionId: for a bad id, before any I/O.
        :raises SessionNotFound: if there is no such session.
        :raises SessionBusy: while a live stream owns the session, also one that
            started here or on another node while this ran.
        """
        validate_session_id(session_id)

        async def attempt() -> bool:
            full = await self.store.load(session_id)
            if full.active_stream_id is not None:
                if not await self._is_stale(full):
                    raise SessionBusy(session_id, full.active_stream_id)
                if not await repair(self.store, full, owner=self.node_id, ttl=self.lease_ttl):
                    raise SessionBusy(session_id, full.active_stream_id or "(another process)")
            if RESUME_KEY not in full.metadata:
                return False
            with_record(full, None)
            await self._save_idle(full, frozenset({"metadata"}), touch_updated_at=False)
            return True

        return await self._write_idle(session_id, attempt)

    async def _resume_sweep(self) -> None:
        """``resume="auto"``: resume every interrupted turn at start-up; on a shared
        store, look again every ``lease_ttl / 2`` seconds (leases of dead nodes expire)."""
        assert self._sweep_scope is not None
        with self._sweep_scope:
            async with anyio.create_task_group() as waiting:
                everything = True
                while True:
                    try:
                        await self._schedule_interrupted(waiting, active=not everything)
                        everything = False
                    except Exception:
                        logger.exception("the resume sweep failed")
                    if self.store.exclusive:
                        return
                    await anyio.sleep(self.lease_ttl / 2)

    async def _schedule_interrupted(self, waiting: anyio.abc.TaskGroup, *, active: bool) -> None:
        """Schedule the resume of every interrupted turn listed. At start-up every
        session is read (a turn repaired with its record kept is resumable too); later
        sweeps look for the turns of nodes whose leases expire, which keep their stream
        active, and read only those (``list_sessions(active=True)``: on PostgreSQL an
        index of a handful of rows instead of every session, on every node, every
        ``lease_ttl / 2`` seconds)."""
        cursor = None
        while True:
            page = await self.store.list_sessions(limit=200, cursor=cursor, active=active)
            for meta in page.sessions:
                if meta.session_id in self._scheduled or meta.session_id in self._busy:
                    continue
                if meta.active_stream_id is not None and meta.active_stream_id in self._live:
                    continue
                record = record_of(meta)
                if record is None:
                    continue
                self._scheduled.add(meta.session_id)
                # no backoff after a suspension: the turn did not crash its process
                crashes = record["attempt"] + 1 - suspensions(record)
                delay = 0.0 if suspended(record) else self.resume_backoff * 2 ** (crashes - 1)
                waiting.start_soon(self._resume_later, meta.session_id, min(60.0, delay))
            cursor = page.next_cursor
            if cursor is None:
                return

    async def _resume_later(self, session_id: str, delay: float) -> None:
        try:
            await anyio.sleep(delay)
            await self.resume(session_id)
        except (SessionBusy, NothingToResume, SessionNotFound):
            pass
        except Exception:
            logger.exception("automatic resume of session %s failed", session_id)
        finally:
            self._scheduled.discard(session_id)

    async def _run(
        self,
        turn: Turn,
        handle: TurnHandle,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            await run_turn(
                self.agent,
                turn,
                handle,
                self.store,
                checkpoint_interval=self.checkpoint_interval,
                final_save_timeout=self.final_save_timeout,
                wakeups=self._wakeups,
                task_status=task_status,
            )
        finally:
            self._live.pop(handle.stream_id, None)
            if self._busy.get(handle.session_id) == handle.stream_id:
                del self._busy[handle.session_id]

    async def cancel(self, stream_id: str) -> bool:
        """Cancel a live turn; its partial output is kept once, marked ``_partial``, and
        one ``cancelled`` marker is added. Returns ``False`` if the stream is not live.
        Returns once the turn's final save is done, so a new turn may start at once.

        A turn another process runs (its lease in the store names that process) is
        cancelled through a shared event log (``broker.shared``): the request goes to
        its owner, which ends it exactly as a local cancel; this call then waits until
        the store shows the stream ended (at most ``final_save_timeout + lease_ttl``
        seconds) and returns whether it did. The request is sent again every second
        until then, and while nobody hears it (the owner's listener reconnecting to the
        event log) for up to :data:`CANCEL_RETRY` seconds (5) before this returns
        ``False``.

        :raises StreamNotFound: if ``stream_id`` is not a stream id of this runtime.
        :raises EventLogUnavailable: if the shared event log cannot be reached.
        """
        handle = self._live.get(stream_id)
        if handle is None:
            return await self._cancel_elsewhere(stream_id)
        handle.cancel()
        await handle.finished.wait()
        return True

    async def _cancel_elsewhere(self, stream_id: str) -> bool:
        session_id = session_of_stream(stream_id)
        if not self.broker.shared or self.store.exclusive:
            return False
        owner = await self._remote_owner(session_id)
        if owner is None or not await self._is_active(session_id, stream_id):
            return False
        heard, delay = False, 0.05
        give_up = anyio.current_time() + CANCEL_RETRY
        with anyio.move_on_after(self.final_save_timeout + self.lease_ttl):
            while True:
                # A request is a pub/sub message: heard by nobody while the owner's
                # listener reconnects (a dropped Redis connection, back within 2 s), and
                # lost if it reached a listener that was going away. So it is sent again
                # until the stream ends, and given up after CANCEL_RETRY seconds in which
                # nobody heard it (a dead owner never does: its stream ends as
                # interrupted with its lease).
                if await self.broker.request_cancel(stream_id, owner):
                    heard = True
                elif not heard and anyio.current_time() + delay > give_up:
                    return False
                with anyio.move_on_after(1.0 if heard else delay):
                    while True:  # the owner's final save clears the active stream
                        if not await self._is_active(session_id, stream_id):
                            return True
                        await anyio.sleep(0.05)
                delay = min(2 * delay, 1.0)
                owner = await self._remote_owner(session_id)
                if owner is None:  # it lost its owner: ended, or dead with its lease
                    return not await self._is_active(session_id, stream_id)
        return False

    async def _remote_owner(self, session_id: str) -> str | None:
        """The node id of another process holding an unexpired lease on the session."""
        lease = await self.store.lease_state(session_id)
        if lease is None or lease.expires_in <= 0 or lease.owner == self.node_id:
            return None
        return lease.owner

    async def _is_active(self, session_id: str, stream_id: str) -> bool:
        try:
            meta = await self.store.load_metadata(session_id)
        except SessionNotFound:
            return False
        return meta.active_stream_id == stream_id

    async def wait_stream(self, stream_id: str) -> None:
        """Wait until a live turn has ended (final save done); returns at once if the
        stream is not live."""
        handle = self._live.get(stream_id)
        if handle is not None:
            await handle.finished.wait()

    def events(self, stream_id: str, after_seq: int = 0) -> Subscription:
        """Follow a stream: ``async for event in rt.events(stream_id, after_seq)``.

        Replays the events with ``seq > after_seq``, then follows live ones, and ends
        after ``stream.end``. Several subscribers may follow one stream; leaving never
        cancels the turn. A stream of a process that died is replayed from the store and
        ended with ``error`` ``{"type": "interrupted"}`` and ``stream.end``.

        :raises StreamNotFound: if ``stream_id`` is not a stream id of this runtime
            (at once), or (while iterating) if no events of it exist anywhere.
        :raises ValueError: if ``after_seq`` is not an integer >= 0.
        """
        session_of_stream(stream_id)
        return Subscription(
            self.broker,
            self.store,
            stream_id,
            after_seq,
            self._repair_session,
            liveness=min(2.0, self.lease_ttl / 3),
            quiet_checks=self._quiet_checks,
        )

    def stream_session(self, stream_id: str) -> str:
        """The session id of a stream id.

        :raises StreamNotFound: if it is not a stream id of this runtime.
        """
        return session_of_stream(stream_id)

    def statistics(self) -> dict[str, int]:
        """``{live_streams, retained_logs, timer_entries}``: an immutable snapshot.

        ``timer_entries``: wake-ups pending in the runtime-wide timer that every live
        turn's checkpoint coroutine sleeps on (one per sleeping turn, plus a bounded
        number left by turns that ended before their wake-up was due)."""
        return {
            "live_streams": len(self._live),
            "retained_logs": len(self.broker),
            "timer_entries": len(self._wakeups),
        }
