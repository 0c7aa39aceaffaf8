"""The ``Store`` ABC: the persistence contract every backend keeps.

The rules come from the bug history of the hermes-webui chat UI (see DESIGN.md,
"Persistence contract"); :mod:`runtime.testing` checks each of them against any
backend. The ABC enforces the backend-independent rules itself, before calling
the backend's ``_write``:

* a metadata-only session cannot be saved (:class:`MetadataOnlySaveError`, before any I/O);
* ids must match ``[A-Za-z0-9_-]{1,64}`` (:class:`InvalidSessionId`, before any I/O);
* replacing stored messages with ``[]`` while a stream is pending is refused;
* a save that shrinks the stored message list asks the backend for a backup;
* a new session lives in memory only until its first save;
* credentials in ``metadata`` (keys such as ``api_key`` or ``authorization``, at any
  depth) are replaced by ``"[redacted]"`` before anything reaches the backend.
"""

from __future__ import annotations

import base64
import binascii
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple, Self, TypedDict

import anyio
import orjson

from .._events import Event
from .._exceptions import (
    EmptyOverwriteRefused,
    InvalidCursor,
    MetadataOnlySaveError,
    SessionNotFound,
    StoreClosed,
)
from .._session import Session, validate_session_id

__all__ = [
    "DEFAULT_REDACT_KEYS",
    "REDACTED",
    "RecoveryReport",
    "SessionPage",
    "Store",
    "StoredInfo",
    "redact",
]

#: Metadata keys whose values are credentials and never reach storage (compared
#: case-insensitively, with ``-`` read as ``_``).
DEFAULT_REDACT_KEYS = frozenset(
    {
        "api_key",
        "apikey",
        "x_api_key",
        "authorization",
        "proxy_authorization",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "cookie",
        "set_cookie",
        "private_key",
    }
)

#: What a redacted value is replaced by.
REDACTED = "[redacted]"


def _redact_key(key: str) -> str:
    return key.lower().replace("-", "_")


def redact(value: object, keys: frozenset[str] = DEFAULT_REDACT_KEYS) -> int:
    """Replace, in place, the values of credential keys in ``value`` (dicts and lists,
    at any depth) by :data:`REDACTED`; returns how many were replaced.

    :param keys: key names, lower case with ``_`` for ``-``.
    """
    count = 0
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and _redact_key(key) in keys:
                if item not in (None, "", REDACTED):
                    value[key] = REDACTED
                    count += 1
            else:
                count += redact(item, keys)
    elif isinstance(value, list):
        for item in value:
            count += redact(item, keys)
    return count


class RecoveryReport(TypedDict):
    """What ``Store.recover()`` did.

    :ivar scanned: sessions stored after recovery.
    :ivar restored: sessions restored from a backup, every one (those recreated from an
        orphan backup included).
    :ivar orphaned_backups: of those, sessions recreated from a backup with no live
        state.
    :ivar quarantined: damaged files moved aside (a file that cannot be read as a
        session or backup); each is logged with its reason and affects nothing else.
    """

    scanned: int
    restored: int
    orphaned_backups: int
    quarantined: int


class StoredInfo(NamedTuple):
    """What a backend knows cheaply about the stored state of one session."""

    message_count: int
    active_stream_id: str | None
    pending_user_message: str | None


@dataclass(frozen=True)
class SessionPage:
    """One page of ``list_sessions()``: metadata-only sessions, newest ``updated_at``
    first, and the cursor of the next page (``None`` on the last page)."""

    sessions: list[Session]
    next_cursor: str | None


def visible_in_list(info_title: str, message_count: int, active: object, pending: object) -> bool:
    """The listing rule: hide "Untitled" sessions with no messages unless a stream is
    active or a message is pending (hermes-webui showed hundreds of empty sessions)."""
    return not (
        info_title == "Untitled" and message_count == 0 and active is None and pending is None
    )


def encode_cursor(updated_at: float, session_id: str) -> str:
    """An opaque keyset cursor: the sort key of the last row of a page."""
    return base64.urlsafe_b64encode(orjson.dumps([updated_at, session_id])).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    """Inverse of :func:`encode_cursor`.

    :raises InvalidCursor: naming the value, if it is not a cursor this store made.
    """
    if not isinstance(cursor, str):
        raise InvalidCursor(f"invalid cursor {cursor!r}: not a cursor from list_sessions()")
    try:
        updated_at, session_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(updated_at, int | float) or not isinstance(session_id, str):
            raise TypeError
        return float(updated_at), validate_session_id(session_id)
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError) as exc:
        raise InvalidCursor(
            f"invalid cursor {cursor!r}: not a cursor from list_sessions()"
        ) from exc


def check_limit(limit: int) -> int:
    """:raises ValueError: unless ``1 <= limit <= 1000``."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 1000:
        raise ValueError(f"invalid limit {limit!r}: must be an integer from 1 to 1000")
    return limit


class Store(ABC):
    """Async persistence for sessions. Use as ``async with store:`` or call
    :meth:`open` / :meth:`aclose`.

    Subclasses implement the underscored hooks; the public methods enforce the
    contract. All methods are coroutines except :meth:`new_session`, which does no I/O.

    :cvar exclusive: True if one process owns the stored sessions while the store is
        open (FileStore's lock), so a stream no task of that process runs is dead.
    """

    exclusive: bool = False

    #: idle per-session locks kept at least (pruned once the dict reaches the limit)
    _LOCKS_KEPT = 1024

    def __init__(self, *, redact_keys: Iterable[str] | None = None) -> None:
        """:param redact_keys: metadata keys whose values never reach storage (default
        :data:`DEFAULT_REDACT_KEYS`; ``()`` turns redaction off)."""
        self.redact_keys = (
            DEFAULT_REDACT_KEYS
            if redact_keys is None
            else frozenset(_redact_key(k) for k in redact_keys)
        )
        self._unsaved: dict[str, Session] = {}
        self._opened = False
        self._closed = False
        self._locks: dict[str, anyio.Lock] = {}
        self._locks_limit = self._LOCKS_KEPT

    def _session_lock(self, session_id: str) -> anyio.Lock:
        """The lock that serialises writes to one session (a checkpoint and a final
        save, say). Locks stay in a dict so a session's next save reuses its lock; idle
        ones are dropped when the dict reaches a limit that doubles with the number
        still in use (amortised O(1) per save, memory bounded by the busy sessions)."""
        lock = self._locks.get(session_id)
        if lock is None:
            if len(self._locks) >= self._locks_limit:
                self._prune_locks()
            lock = self._locks[session_id] = anyio.Lock(fast_acquire=True)
        return lock

    def _prune_locks(self) -> None:
        for sid, lock in list(self._locks.items()):
            if not lock.locked() and not lock.statistics().tasks_waiting:
                del self._locks[sid]
        self._locks_limit = max(self._LOCKS_KEPT, 2 * len(self._locks))

    # -- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        """Make the store ready (take locks, read indexes). Idempotent.

        :raises StoreClosed: if the store was closed.
        :raises StoreLocked: if another process owns the store (FileStore).
        """
        if self._closed:
            raise StoreClosed("store is closed")
        if not self._opened:
            await self._open()
            self._opened = True

    async def aclose(self) -> None:
        """Release the store. Idempotent; completes even when cancelled."""
        if self._closed:
            return
        self._closed = True
        if self._opened:
            await self._close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _check_id(self, session_id: str) -> str:
        """Validate an id before any I/O; backends may reserve more names.

        :raises InvalidSessionId: naming the value and the rule.
        """
        return validate_session_id(session_id)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("store is closed")
        if not self._opened:
            raise StoreClosed("store is not open; use 'async with store:' or await store.open()")

    # -- the contract ---------------------------------------------------------------

    def new_session(self, **fields: object) -> Session:
        """A new session, held in memory until its first :meth:`save` (no file, no row).

        It can be loaded by id in between. Fields are those of :class:`Session`.

        :raises InvalidSessionId: if a given ``session_id`` breaks the id rule.
        :raises TypeError: for an unknown field.
        """
        session = Session(**fields)  # type: ignore[arg-type]
        self._check_id(session.session_id)
        self._unsaved[session.session_id] = session
        return session

    async def save(
        self,
        session: Session,
        *,
        skip_index: bool = False,
        touch_updated_at: bool = True,
        events: Sequence[Event] = (),
    ) -> None:
        """Save ``session`` atomically and durably: when this returns, a crash at any
        instant leaves the new state; before, the old one. Never a torn one.

        :param skip_index: a checkpoint save: do not update the list index. Backends may
            write only what changed since the last durable write (FileStore appends to a
            journal); such a save persists appended messages, changes to the last message
            and every metadata field. Edit earlier messages with a full save.
        :param touch_updated_at: set ``updated_at`` to now (epoch seconds) first.
        :param events: stream events to persist with this save, keyed by their own
            ``stream_id``, so the stream can be replayed after a restart (see
            :meth:`load_events`); events already persisted (by ``seq``) are skipped.
        Credentials in ``session.metadata`` (see ``redact_keys``) are replaced by
        :data:`REDACTED` in ``session`` itself first, so no store ever writes them.

        :raises MetadataOnlySaveError: for a metadata-only session, before any I/O.
        :raises InvalidSessionId: for a bad id, before any I/O.
        :raises EmptyOverwriteRefused: if stored messages would be replaced by ``[]``
            while a stream is pending (active stream or pending message, stored or new).
        :raises StoreClosed: if the store is not open.
        :raises StoreError: if the backend fails; the stored state is then the old one.
        """
        if session.metadata_only:
            raise MetadataOnlySaveError(
                f"refusing to save session {session.session_id!r}: it was loaded "
                "metadata-only and saving it would replace its stored messages"
            )
        self._check_id(session.session_id)
        self._check_open()
        if session.metadata and self.redact_keys:
            redact(session.metadata, self.redact_keys)
        lock = self._session_lock(session.session_id)
        await lock.acquire()
        try:
            await self._save_locked(session, skip_index, touch_updated_at, events)
        finally:
            lock.release()

    async def _save_locked(
        self,
        session: Session,
        skip_index: bool,
        touch_updated_at: bool,
        events: Sequence[Event],
    ) -> None:
        info = await self._stored_info(session.session_id)
        count = len(session.messages)
        if info is not None and count == 0 and info.message_count > 0:
            pending = (
                session.active_stream_id,
                session.pending_user_message,
                info.active_stream_id,
                info.pending_user_message,
            )
            if any(p is not None for p in pending):
                raise EmptyOverwriteRefused(
                    f"refusing to replace the {info.message_count} stored messages of session "
                    f"{session.session_id!r} with an empty list while a stream is pending"
                )
        if touch_updated_at:
            session.updated_at = time.time()
        backup = info is not None and count < info.message_count
        await self._write(session, skip_index=skip_index, backup=backup, events=events)
        self._unsaved.pop(session.session_id, None)

    async def load(self, session_id: str) -> Session:
        """The whole session, messages included, as a new object.

        :raises InvalidSessionId: for a bad id, before any I/O.
        :raises SessionNotFound: if there is no such session.
        :raises CorruptSession: if its stored form cannot be decoded.
        """
        self._check_id(session_id)
        self._check_open()
        unsaved = self._unsaved.get(session_id)
        if unsaved is not None:
            return unsaved.copy()
        return await self._load(session_id)

    async def load_metadata(self, session_id: str) -> Session:
        """The session without its messages (``metadata_only``); cheap, and unsaveable.

        :raises InvalidSessionId: for a bad id, before any I/O.
        :raises SessionNotFound: if there is no such session.
        """
        self._check_id(session_id)
        self._check_open()
        unsaved = self._unsaved.get(session_id)
        if unsaved is not None:
            return Session.from_dict(unsaved.meta_dict(), metadata_only=True)
        return await self._load_metadata(session_id)

    async def exists(self, session_id: str) -> bool:
        """True if the session is stored or held unsaved.

        :raises InvalidSessionId: for a bad id, before any I/O.
        """
        self._check_id(session_id)
        self._check_open()
        return session_id in self._unsaved or await self._stored_info(session_id) is not None

    async def delete(self, session_id: str) -> None:
        """Delete the session; ``recover()`` will never bring it back (tombstone).

        :raises InvalidSessionId: for a bad id, before any I/O.
        :raises SessionNotFound: if there is no such session.
        """
        self._check_id(session_id)
        self._check_open()
        if self._unsaved.pop(session_id, None) is not None:
            return
        async with self._session_lock(session_id):
            if await self._stored_info(session_id) is None:
                raise SessionNotFound(f"no session {session_id!r}")
            await self._delete(session_id)

    async def list_sessions(self, *, limit: int = 50, cursor: str | None = None) -> SessionPage:
        """One page of stored sessions, metadata-only, newest ``updated_at`` first
        (ties by ``session_id``). Empty "Untitled" sessions are hidden unless a stream is
        active or a message is pending.

        :param limit: rows per page, 1 to 1000.
        :param cursor: ``next_cursor`` of the previous page.
        :raises ValueError: for a bad ``limit``.
        :raises InvalidCursor: for a cursor this store did not hand out.
        """
        check_limit(limit)
        after = None if cursor is None else decode_cursor(cursor)
        self._check_open()
        rows = await self._list_page(limit, after)
        next_cursor = None
        if len(rows) == limit and await self._has_more(rows[-1]):
            last = rows[-1]
            next_cursor = encode_cursor(last.updated_at, last.session_id)
        return SessionPage(rows, next_cursor)

    async def recover(self) -> RecoveryReport:
        """Startup recovery: restore live sessions that hold fewer messages than their
        backup, recreate sessions from orphan backups, skip ``_``-prefixed names, never
        resurrect a deleted session, rebuild the index. A no-op on a clean store.
        """
        self._check_open()
        return await self._recover()

    async def load_events(self, session_id: str, stream_id: str, after_seq: int = 0) -> list[Event]:
        """The persisted events of a stream of this session with ``seq > after_seq``,
        in order; ``[]`` if none were persisted.

        :raises InvalidSessionId: for a bad id, before any I/O.
        """
        self._check_id(session_id)
        self._check_open()
        return await self._load_events(session_id, stream_id, after_seq)

    # -- backend hooks --------------------------------------------------------------

    async def _open(self) -> None:  # noqa: B027 - optional hook
        """Backend start-up."""

    async def _close(self) -> None:  # noqa: B027 - optional hook
        """Backend shut-down; must complete even when cancelled."""

    @abstractmethod
    async def _stored_info(self, session_id: str) -> StoredInfo | None:
        """Cheap facts about the stored session, or ``None`` if not stored."""

    @abstractmethod
    async def _write(
        self, session: Session, *, skip_index: bool, backup: bool, events: Sequence[Event]
    ) -> None:
        """Persist ``session`` atomically and durably; keep a backup of the previous
        state first when ``backup``."""

    @abstractmethod
    async def _load(self, session_id: str) -> Session:
        """Full load; :class:`SessionNotFound` if absent."""

    @abstractmethod
    async def _load_metadata(self, session_id: str) -> Session:
        """Metadata-only load; :class:`SessionNotFound` if absent."""

    @abstractmethod
    async def _delete(self, session_id: str) -> None:
        """Remove the session and leave a tombstone."""

    @abstractmethod
    async def _list_page(self, limit: int, after: tuple[float, str] | None) -> list[Session]:
        """Up to ``limit`` visible sessions after the keyset ``after``, metadata-only."""

    @abstractmethod
    async def _has_more(self, last: Session) -> bool:
        """True if a visible session sorts after ``last``."""

    @abstractmethod
    async def _recover(self) -> RecoveryReport:
        """Backend recovery."""

    @abstractmethod
    async def _load_events(self, session_id: str, stream_id: str, after_seq: int) -> list[Event]:
        """Persisted events of the stream after ``after_seq``."""


def sort_key(updated_at: float, session_id: str) -> tuple[float, str]:
    """The list order key: newest first, then by id. Smaller sorts first."""
    return (-updated_at, session_id)


def page_after(
    keys: Iterable[tuple[float, str]], after: tuple[float, str] | None
) -> Iterable[tuple[float, str]]:
    """Keys (as from :func:`sort_key`) that sort strictly after the cursor ``after``."""
    if after is None:
        return keys
    bound = sort_key(*after)
    return (k for k in keys if k > bound)


def not_found(session_id: str) -> SessionNotFound:
    """The error for a missing session."""
    return SessionNotFound(f"no session {session_id!r}")
