"""The gateway route table: chat-platform conversation keys → sessions, pruned by age.

A gateway serving chat platforms (Telegram, Slack, WhatsApp, …) maps each external
conversation to one session with a *session key*
(``agent:<profile>:<platform>:<chat_type>:<chat_id>[:<thread_id>][:<user_id>]``).
The table is kept in memory and persisted as ``<store root>/routes.json``, written
atomically (temp file, fsync, rename, fsync of the directory) off the event loop.

The production gateway these rules come from saw its index grow without bound until
pruning was added: :meth:`RouteTable.prune_old_entries` drops routes not *updated*
for ``max_age_days`` (suspended routes and routes with live processes are kept), and
:func:`prune_periodically` runs it in the background. Pruning removes routes only,
never session transcripts.

One process owns a ``routes.json`` at a time: the table does not re-read the file
after its first load.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, TypeVar

import anyio
import anyio.abc
import orjson

from ._config import default_root
from ._exceptions import StoreError, WriteConflict
from ._session import new_session_id
from .stores._fileio import atomic_write

if TYPE_CHECKING:
    from .stores.abc import Store

__all__ = [
    "DEFAULT_MAX_AGE_DAYS",
    "README_TEXT",
    "ROUTES_FILENAME",
    "HasActiveProcesses",
    "RouteConfig",
    "RouteEntry",
    "RouteTable",
    "RouteTableStatistics",
    "prune_periodically",
    "session_key",
]

logger = logging.getLogger(__name__)

#: File name of the route table inside the store root.
ROUTES_FILENAME = "routes.json"

#: Routes not updated for this many days are pruned unless configured otherwise.
DEFAULT_MAX_AGE_DAYS = 90

#: The value of the ``_README`` key, always the first key of ``routes.json``.
README_TEXT = (
    "This file is the gateway routing index (chat-platform conversation keys -> session "
    "ids), not the session list; sessions are listed with `runtime sessions list`."
)

#: ``has_active_processes(session_key) -> bool`` (or an awaitable of it): true keeps the
#: route. It receives the **session key**, never the session id.
HasActiveProcesses: TypeAlias = Callable[[str], bool | Awaitable[bool]]

_T = TypeVar("_T")


def session_key(
    platform: str,
    chat_type: str,
    chat_id: str | int,
    thread_id: str | int | None = None,
    user_id: str | int | None = None,
    profile: str = "main",
) -> str:
    """Build ``agent:<profile>:<platform>:<chat_type>:<chat_id>[:<thread_id>][:<user_id>]``.

    ``thread_id`` and ``user_id`` are left out when ``None`` or ``""``; integer ids
    (Telegram chat ids) are written in decimal.

    :raises ValueError: if ``profile``, ``platform``, ``chat_type`` or ``chat_id`` is empty.
    :raises TypeError: if a part is neither ``str`` nor ``int``.
    """
    parts = [_key_part("profile", profile), _key_part("platform", platform)]
    parts += [_key_part("chat_type", chat_type), _key_part("chat_id", chat_id)]
    for name, optional in (("thread_id", thread_id), ("user_id", user_id)):
        if optional is not None and optional != "":
            parts.append(_key_part(name, optional))
    return "agent:" + ":".join(parts)


def _key_part(name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"session key part {name}={value!r} must be a str or an int")
    text = str(value)
    if not text:
        raise ValueError(f"session key part {name}={value!r} must not be empty")
    return text


def _check_route_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"route key {key!r} must be a str")
    if not key or key.startswith("_"):
        raise ValueError(
            f"invalid route key {key!r}: must be non-empty and must not start with '_' "
            "(reserved for file metadata such as _README)"
        )
    return key


def _check_route_session_id(session_id: object) -> str:
    if not isinstance(session_id, str):
        raise TypeError(f"route session_id {session_id!r} must be a str")
    if not session_id or ".." in session_id or "/" in session_id or "\\" in session_id:
        raise ValueError(
            f"invalid route session_id {session_id!r}: must be non-empty and must not "
            "contain '..', '/' or '\\'"
        )
    return session_id


def _check_aware(name: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"route {name}={value!r} must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"route {name}={value!r} must be timezone-aware (e.g. tzinfo=UTC)")
    return value


def _parse_time(name: str, value: object) -> datetime:
    """ISO 8601 → aware datetime; a string without an offset is read as UTC."""
    if not isinstance(value, str):
        raise TypeError(f"route {name}={value!r} must be an ISO 8601 string")
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One route: an external conversation (``session_key``) and its session.

    Immutable; the table hands out snapshots. ``created_at`` / ``updated_at`` are
    timezone-aware datetimes; pruning looks at ``updated_at`` only. A ``suspended``
    route is never pruned.

    :raises ValueError: if ``session_id`` is empty or contains ``..``, ``/`` or ``\\``;
        if ``session_key`` is empty or starts with ``_``; if a time is naive.
    :raises TypeError: if a field has the wrong type.
    """

    session_key: str
    session_id: str
    created_at: datetime
    updated_at: datetime
    platform: str = ""
    chat_type: str = ""
    display_name: str | None = None
    suspended: bool = False

    def __post_init__(self) -> None:
        _check_route_key(self.session_key)
        _check_route_session_id(self.session_id)
        _check_aware("created_at", self.created_at)
        _check_aware("updated_at", self.updated_at)
        for name in ("platform", "chat_type"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"route {name}={getattr(self, name)!r} must be a str")
        if self.display_name is not None and not isinstance(self.display_name, str):
            raise TypeError(f"route display_name={self.display_name!r} must be a str or None")
        if not isinstance(self.suspended, bool):
            raise TypeError(f"route suspended={self.suspended!r} must be a bool")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, times as ISO 8601 strings (``session_key`` included)."""
        return {
            "session_key": self.session_key,
            "session_id": self.session_id,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "platform": self.platform,
            "chat_type": self.chat_type,
            "display_name": self.display_name,
            "suspended": self.suspended,
        }

    @classmethod
    def from_dict(cls, session_key: str, data: Mapping[str, Any]) -> RouteEntry:
        """Build an entry stored under ``session_key`` in ``routes.json``.

        A time without a UTC offset is read as UTC.

        :raises KeyError: if ``session_id``, ``created_at`` or ``updated_at`` is missing.
        :raises ValueError: if a value breaks a rule of :class:`RouteEntry`.
        :raises TypeError: if a value has the wrong type.
        """
        return cls(
            session_key=session_key,
            session_id=data["session_id"],
            created_at=_parse_time("created_at", data["created_at"]),
            updated_at=_parse_time("updated_at", data["updated_at"]),
            platform=data.get("platform", ""),
            chat_type=data.get("chat_type", ""),
            display_name=data.get("display_name"),
            suspended=data.get("suspended", False),
        )


def _coerce_max_age_days(value: object) -> int:
    """Absent/non-integer → 90, negative → 0 (the gateway config rules)."""
    if isinstance(value, bool):
        return DEFAULT_MAX_AGE_DAYS
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            return DEFAULT_MAX_AGE_DAYS
    else:
        return DEFAULT_MAX_AGE_DAYS
    return max(number, 0)


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """Route-table settings. ``max_age_days <= 0`` disables pruning.

    :raises ValueError: if ``max_age_days`` is negative (use :meth:`from_dict` for
        lenient config input).
    :raises TypeError: if ``max_age_days`` is not an ``int``.
    """

    max_age_days: int = field(default=DEFAULT_MAX_AGE_DAYS)

    def __post_init__(self) -> None:
        if isinstance(self.max_age_days, bool) or not isinstance(self.max_age_days, int):
            raise TypeError(f"max_age_days={self.max_age_days!r} must be an int")
        if self.max_age_days < 0:
            raise ValueError(f"max_age_days={self.max_age_days!r} must be >= 0 (0 disables)")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RouteConfig:
        """Read settings leniently: ``max_age_days`` absent or not an integer → 90;
        negative → 0. Integral floats (``30.0``) and integer strings (``"30"``) count
        as integers; unknown keys are ignored.

        :raises TypeError: if ``data`` is not a mapping.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"route config {data!r} must be a mapping")
        return cls(max_age_days=_coerce_max_age_days(data.get("max_age_days")))

    def to_dict(self) -> dict[str, Any]:
        """``{"max_age_days": n}``; :meth:`from_dict` of it gives an equal config."""
        return {"max_age_days": self.max_age_days}


class RouteTableStatistics(NamedTuple):
    """A snapshot of a :class:`RouteTable`: routes in memory (0 before the first
    load) and how many times this object wrote ``routes.json``."""

    entries: int
    writes: int


def _parse_table(path: Path, raw: bytes) -> dict[str, RouteEntry]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise StoreError(
            f"route table {str(path)!r} is not valid JSON ({exc}); fix or remove it"
        ) from exc
    if not isinstance(data, dict):
        raise StoreError(f"route table {str(path)!r} must hold a JSON object")
    entries: dict[str, RouteEntry] = {}
    for key, value in data.items():
        if key.startswith("_") or not isinstance(value, dict):
            continue  # the _README sentinel, future metadata, junk
        try:
            entries[key] = RouteEntry.from_dict(key, value)
        except (KeyError, ValueError, TypeError) as exc:
            logger.warning("route table %s: skipping route %r: %s", path, key, exc)
    return entries


def _dump_table(entries: Mapping[str, RouteEntry]) -> bytes:
    data: dict[str, Any] = {"_README": README_TEXT}
    for key in sorted(entries):
        row = entries[key].to_dict()
        del row["session_key"]  # the object key says it
        data[key] = row
    return orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"


class RouteTable:
    """The gateway routing index, persisted as ``routes.json`` (async API).

    Nothing is read until the first call. Every change is durable when the call
    returns. One :class:`threading.Lock` guards the in-memory table and the file; it
    is only ever taken in a worker thread (``anyio.to_thread``), so the event loop never
    waits on it, and the table is safe to use from several tasks and from several
    threads (each running its own event loop, or through ``anyio.from_thread``).

    :param path: the ``routes.json`` file (its directory is created on the first write).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._lock = threading.Lock()
        self._entries: dict[str, RouteEntry] | None = None
        self._writes = 0
        self._store: Store | None = None
        self._alock: anyio.Lock | None = None
        self._version: int | None = None
        self._staged: dict[str, RouteEntry] | None = None

    @classmethod
    def on_store(cls, store: Store) -> RouteTable:
        """The table kept as the ``routes.json`` document of ``store`` (its public
        :meth:`~runtime.Store.read_document` / :meth:`~runtime.Store.write_document`), so
        it lives wherever the sessions live and works on every backend. On a store
        several processes share, each call reads the current table and writes it back by
        compare-and-set, retrying when another process wrote in between. The store must
        be open while the table is used.
        """
        table = cls(ROUTES_FILENAME)
        table._store = store
        table._alock = anyio.Lock()
        return table

    @classmethod
    def for_root(cls, root: str | os.PathLike[str] | None = None) -> RouteTable:
        """The table of a store root: ``<root>/routes.json``; ``None`` means
        :func:`runtime._config.default_root` (``$RUNTIME_HOME`` or ``./.runtime``)."""
        return cls(Path(default_root() if root is None else root) / ROUTES_FILENAME)

    @classmethod
    def default(cls) -> RouteTable:
        """The table of the default store root (``$RUNTIME_HOME`` or ``./.runtime``)."""
        return cls.for_root(None)

    @property
    def path(self) -> Path:
        """The ``routes.json`` file."""
        return self._path

    def __repr__(self) -> str:
        return f"RouteTable({str(self._path)!r})"

    def statistics(self) -> RouteTableStatistics:
        """Routes in memory and file writes so far (read without waiting for the lock)."""
        entries = self._entries
        return RouteTableStatistics(0 if entries is None else len(entries), self._writes)

    # -- locked core (worker threads only) ------------------------------------------

    async def _locked(self, fn: Callable[[dict[str, RouteEntry]], _T]) -> _T:
        """Run ``fn(entries)`` in a worker thread holding the lock, after loading (or,
        for a table on a store, in this task under an ``anyio.Lock``)."""
        if self._store is not None:
            return await self._locked_on_store(self._store, fn)

        def run() -> _T:
            with self._lock:
                return fn(self._load_locked())

        return await anyio.to_thread.run_sync(run)

    def _load_locked(self) -> dict[str, RouteEntry]:
        if self._entries is None:
            try:
                raw = self._path.read_bytes()
            except FileNotFoundError:
                self._entries = {}
            except OSError as exc:
                raise StoreError(f"cannot read route table {str(self._path)!r}: {exc}") from exc
            else:
                self._entries = _parse_table(self._path, raw)
        return self._entries

    async def _locked_on_store(self, store: Store, fn: Callable[[dict[str, RouteEntry]], _T]) -> _T:
        assert self._alock is not None
        async with self._alock:
            for _ in range(20):
                if self._entries is None or store.shared:  # others may have written
                    doc = await store.read_document(ROUTES_FILENAME)
                    self._version = None if doc is None else doc[1]
                    self._entries = {} if doc is None else _parse_table(self._path, doc[0])
                self._staged = None
                result = fn(self._entries)
                staged, self._staged = self._staged, None
                if staged is None:
                    return result
                try:
                    self._version = await store.write_document(
                        ROUTES_FILENAME, _dump_table(staged), expected_version=self._version
                    )
                except WriteConflict:
                    self._entries = None
                    continue
                self._entries = staged
                self._writes += 1
                return result
        raise StoreError("route table: another process kept changing it; try again")

    def _commit_locked(self, entries: dict[str, RouteEntry]) -> None:
        """Write ``entries``, then make them the table; a failed write changes nothing.
        (On a store: stage them; :meth:`_locked_on_store` writes them.)"""
        if self._store is not None:
            self._staged = entries
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # mode 0o600: the table holds chat ids and user names
            atomic_write(self._path, _dump_table(entries), mode=0o600)
        except OSError as exc:
            raise StoreError(f"cannot write route table {str(self._path)!r}: {exc}") from exc
        self._entries = entries
        self._writes += 1

    # -- public API -----------------------------------------------------------------

    async def get(self, session_key: str) -> RouteEntry | None:
        """The route of ``session_key``, or ``None``. Does not touch ``updated_at``.

        :raises StoreError: if ``routes.json`` cannot be read or decoded.
        """
        return await self._locked(lambda entries: entries.get(session_key))

    async def entries(self) -> list[RouteEntry]:
        """Every route, most recently updated first.

        :raises StoreError: if ``routes.json`` cannot be read or decoded.
        """
        rows = await self._locked(lambda entries: list(entries.values()))
        return sorted(rows, key=lambda e: (e.updated_at, e.session_key), reverse=True)

    async def get_or_create(
        self,
        session_key: str,
        *,
        platform: str | None = None,
        chat_type: str | None = None,
        display_name: str | None = None,
    ) -> RouteEntry:
        """The route of ``session_key`` with ``updated_at`` set to now, created with a
        new session id (uuid4 hex) if absent, and saved.

        ``platform`` / ``chat_type`` default to the parts of an ``agent:…`` key; a
        given ``display_name`` replaces the stored one.

        :raises ValueError: if ``session_key`` is empty or starts with ``_``.
        :raises TypeError: if ``display_name`` is neither ``str`` nor ``None``.
        :raises StoreError: if ``routes.json`` cannot be read, decoded or written.
        """
        _check_route_key(session_key)
        if display_name is not None and not isinstance(display_name, str):
            raise TypeError(f"display_name={display_name!r} must be a str or None")

        def op(entries: dict[str, RouteEntry]) -> RouteEntry:
            now = _now()
            old = entries.get(session_key)
            if old is None:
                key_platform, key_chat_type = _parts_from_key(session_key)
                entry = RouteEntry(
                    session_key=session_key,
                    session_id=new_session_id(),
                    created_at=now,
                    updated_at=now,
                    platform=key_platform if platform is None else platform,
                    chat_type=key_chat_type if chat_type is None else chat_type,
                    display_name=display_name,
                )
            else:
                name = old.display_name if display_name is None else display_name
                entry = replace(old, updated_at=now, display_name=name)
            self._commit_locked({**entries, session_key: entry})
            return entry

        return await self._locked(op)

    async def put(self, entry: RouteEntry) -> None:
        """Store ``entry`` under its ``session_key`` (insert or replace) and save.

        :raises TypeError: if ``entry`` is not a :class:`RouteEntry`.
        :raises StoreError: if ``routes.json`` cannot be read, decoded or written.
        """
        if not isinstance(entry, RouteEntry):
            raise TypeError(f"{entry!r} is not a RouteEntry")
        await self._locked(
            lambda entries: self._commit_locked({**entries, entry.session_key: entry})
        )

    async def set_suspended(self, session_key: str, suspended: bool = True) -> RouteEntry:
        """Mark a route (un)suspended and save; suspended routes are never pruned.

        :raises KeyError: if no route has ``session_key``.
        :raises StoreError: if ``routes.json`` cannot be read, decoded or written.
        """

        def op(entries: dict[str, RouteEntry]) -> RouteEntry:
            old = entries.get(session_key)
            if old is None:
                raise KeyError(f"no route with session key {session_key!r}")
            entry = replace(old, suspended=bool(suspended))
            if entry != old:
                self._commit_locked({**entries, session_key: entry})
            return entry

        return await self._locked(op)

    async def remove(self, session_key: str) -> bool:
        """Remove a route (never its session); ``True`` if it existed. Writes only then.

        :raises StoreError: if ``routes.json`` cannot be read, decoded or written.
        """

        def op(entries: dict[str, RouteEntry]) -> bool:
            if session_key not in entries:
                return False
            self._commit_locked({k: e for k, e in entries.items() if k != session_key})
            return True

        return await self._locked(op)

    async def prune_old_entries(
        self, max_age_days: int, *, has_active_processes: HasActiveProcesses | None = None
    ) -> int:
        """Remove routes whose ``updated_at`` (not ``created_at``) is more than
        ``max_age_days`` days old; return how many were removed.

        Kept: ``suspended`` routes, and routes for which
        ``has_active_processes(session_key)`` returns true (the callback gets the
        **session key**, never the session id; it may return an awaitable and runs in
        the calling task, outside the lock, only for routes that are otherwise stale).
        ``max_age_days <= 0`` disables pruning and returns 0. The file is written only
        when something was removed. Session files are never touched. A route updated
        while the callback runs is kept.

        :raises TypeError: if ``max_age_days`` is not an ``int``.
        :raises StoreError: if ``routes.json`` cannot be read, decoded or written.
        Errors from the callback propagate; nothing is removed then.
        """
        if isinstance(max_age_days, bool) or not isinstance(max_age_days, int):
            raise TypeError(f"max_age_days={max_age_days!r} must be an int")
        if max_age_days <= 0:
            return 0
        try:
            cutoff = _now() - timedelta(days=max_age_days)
        except OverflowError:
            return 0  # older than datetime.min: nothing can be that old

        def stale(entry: RouteEntry | None) -> bool:
            return entry is not None and not entry.suspended and entry.updated_at < cutoff

        candidates = await self._locked(lambda entries: [k for k, e in entries.items() if stale(e)])
        if has_active_processes is not None:
            candidates = [k for k in candidates if not await _ask(has_active_processes, k)]
        if not candidates:
            return 0

        def op(entries: dict[str, RouteEntry]) -> int:
            doomed = {k for k in candidates if stale(entries.get(k))}
            if doomed:
                self._commit_locked({k: e for k, e in entries.items() if k not in doomed})
            return len(doomed)

        return await self._locked(op)


def _parts_from_key(key: str) -> tuple[str, str]:
    """``(platform, chat_type)`` of an ``agent:<profile>:<platform>:<chat_type>:…`` key."""
    parts = key.split(":")
    if len(parts) >= 5 and parts[0] == "agent":
        return parts[2], parts[3]
    return "", ""


async def _ask(callback: HasActiveProcesses, key: str) -> bool:
    result = callback(key)
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


async def prune_periodically(
    table: RouteTable,
    *,
    interval: float = 3600.0,
    max_age_days: int = DEFAULT_MAX_AGE_DAYS,
    has_active_processes: HasActiveProcesses | None = None,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Prune ``table`` at once, then every ``interval`` seconds, until cancelled.

    Meant for ``await tg.start(prune_periodically, table)``: ``task_status.started()``
    is called after the first prune. Removed counts are logged (``INFO`` when routes
    were removed); a failed prune is logged and retried at the next tick. Only
    routes are removed, never session files.

    :param interval: seconds between prunes (default one hour).
    :param max_age_days: see :meth:`RouteTable.prune_old_entries` (``<= 0`` disables).
    :param has_active_processes: see :meth:`RouteTable.prune_old_entries`.
    :raises ValueError: if ``interval`` is not a finite number > 0.
    :raises TypeError: if ``max_age_days`` is not an ``int``.
    """
    if not isinstance(interval, int | float) or not math.isfinite(interval) or interval <= 0:
        raise ValueError(f"interval={interval!r} must be a finite number of seconds > 0")
    if isinstance(max_age_days, bool) or not isinstance(max_age_days, int):
        raise TypeError(f"max_age_days={max_age_days!r} must be an int")
    started = False
    while True:
        await _prune_tick(table, max_age_days, has_active_processes)
        if not started:
            task_status.started()
            started = True
        await anyio.sleep(interval)


async def _prune_tick(
    table: RouteTable, max_age_days: int, has_active_processes: HasActiveProcesses | None
) -> None:
    try:
        removed = await table.prune_old_entries(
            max_age_days, has_active_processes=has_active_processes
        )
    except Exception:
        logger.exception("route table %s: pruning failed; retrying next tick", table.path)
        return
    level = logging.INFO if removed else logging.DEBUG
    logger.log(
        level,
        "route table %s: pruned %d route(s) older than %d days",
        table.path,
        removed,
        max_age_days,
    )
