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
  depth) are replaced by ``"[redacted]"`` before anything reaches the backend;
* a write of a running turn carries its :class:`Lease` and is fenced: it happens only
  while the stored lease has the same token (:class:`~runtime.LeaseLost` otherwise);
* a save that says what changed (:class:`SaveDelta`) is applied only to the stored
  state it was computed against (:class:`~runtime.WriteConflict` otherwise).

The check and the write are one backend operation (:meth:`Store._save`): the default
runs both under an in-process lock, which is enough for a store that one process owns
(MemoryStore, FileStore with its root lock); a store shared by processes overrides it
with a transaction or a compare-and-set (PostgresStore).
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, ClassVar, Literal, NamedTuple, Self, TypedDict

import orjson

from .._events import Event
from .._exceptions import (
    EmptyOverwriteRefused,
    Error,
    InvalidCursor,
    LeaseLost,
    MetadataOnlySaveError,
    SessionBusy,
    SessionNotFound,
    StoreClosed,
    ToolCallNotFound,
    WriteConflict,
)
from .._json import check_json_ready
from .._session import META_FIELDS, Session, validate_session_id
from .._timer import Mutex

__all__ = [
    "DEFAULT_REDACT_KEYS",
    "DELTA_FIELDS",
    "REDACTED",
    "Lease",
    "LeaseMode",
    "LeaseState",
    "RecoveryReport",
    "SaveDelta",
    "SaveRequest",
    "SessionPage",
    "Store",
    "StoredInfo",
    "ToolCallRecord",
    "ToolCallState",
    "check_document_version",
    "map_exceptions",
    "redact",
]

#: How a save treats the session's lease (see :meth:`Store.save`).
LeaseMode = Literal["claim", "renew", "release", "repair"]
_LEASE_MODES = ("claim", "renew", "release", "repair")


@dataclass(frozen=True)
class Lease:
    """A claim on the right to run a session's live stream.

    :ivar owner: the claiming process (a node id, for people reading the store).
    :ivar token: unique per claim; every write of the running turn carries it (fencing).
    :ivar ttl: seconds the lease lasts after each claim or renewal.
    """

    owner: str
    token: str
    ttl: float


class LeaseState(NamedTuple):
    """The stored lease of a session: its owner and the seconds until it expires
    (``<= 0``: expired, measured on the backend's clock)."""

    owner: str
    expires_in: float


class HeldLease(NamedTuple):
    """A stored lease as a backend reads it inside a conditional write."""

    owner: str
    token: str
    expires_in: float


#: Session fields a :class:`SaveDelta` may name (``updated_at`` is always written).
DELTA_FIELDS = frozenset(META_FIELDS) - {"session_id", "updated_at"}


#: ``SaveDelta.fields`` when no field changed
_NO_FIELDS: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, init=False)
class SaveDelta:
    """What changed in a session since its last durable write, told by the writer
    (the runner's checkpoints) so a backend writes only that, instead of finding it
    out by comparing the new state with the stored one.

    :ivar base: the message count the store holds durably now. A save whose stored
        count differs is refused with :class:`~runtime.WriteConflict` and writes
        nothing: the delta was computed against another state.
    :ivar keep: the stored messages left as they are: ``base`` when messages were only
        appended, ``base - 1`` when the last stored message was changed in place (a
        streamed reply growing, a tool call joining its group), lower to replace more.
        ``session.messages[keep:]`` are written after them.
    :ivar fields: the session fields (names from :data:`DELTA_FIELDS`) changed since;
        the others keep their stored values. ``updated_at`` is always written.

    A backend may still write more (FileStore's compacting save writes everything).

    :raises ValueError: from the constructor, naming the value and the rule: ``base``
        or ``keep`` not an int ``>= 0``, ``keep > base``, ``fields`` not a frozenset
        of names from :data:`DELTA_FIELDS`.
    """

    base: int
    keep: int
    fields: frozenset[str] = _NO_FIELDS

    def __init__(self, base: int, keep: int, fields: frozenset[str] = _NO_FIELDS) -> None:
        # A running turn builds one per checkpoint: the common shapes pass one
        # expression, anything else gets the full check (same rules, its messages), and
        # the fields are set through their slots (a frozen dataclass's generated
        # __init__ calls object.__setattr__ per field: ~3x the cost).
        if not (
            type(base) is int
            and type(keep) is int
            and 0 <= keep <= base
            and type(fields) is frozenset
            and (not fields or fields <= DELTA_FIELDS)
        ):
            _check_delta(base, keep, fields)
        _set_base(self, base)
        _set_keep(self, keep)
        _set_fields(self, fields)

    @classmethod
    def appended(cls, base: int, fields: Iterable[str] = ()) -> SaveDelta:
        """Messages appended after the ``base`` stored ones, nothing else changed in them."""
        return cls(base, base, frozenset(fields) if fields else _NO_FIELDS)


def _check_delta(base: object, keep: object, fields: object) -> None:
    """The rules of :class:`SaveDelta`'s arguments.

    :raises ValueError: naming the value and the rule.
    """
    for name, value in (("base", base), ("keep", keep)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"invalid SaveDelta {name} {value!r}: must be an int >= 0")
    assert isinstance(base, int) and isinstance(keep, int)
    if keep > base:
        raise ValueError(f"invalid SaveDelta keep {keep}: must not exceed base {base}")
    if not isinstance(fields, frozenset):
        raise ValueError(f"invalid SaveDelta fields {fields!r}: must be a frozenset")
    unknown = sorted(fields - DELTA_FIELDS)
    if unknown:
        raise ValueError(
            f"invalid SaveDelta fields {unknown!r}: must be among {sorted(DELTA_FIELDS)}"
        )


# the slots' own setters (a frozen dataclass refuses attribute assignment)
_set_base = SaveDelta.__dict__["base"].__set__
_set_keep = SaveDelta.__dict__["keep"].__set__
_set_fields = SaveDelta.__dict__["fields"].__set__


#: The state of a tool call in the ledger: its intent is durable (``started``), or its
#: result is (``completed``, ``failed``).
ToolCallState = Literal["started", "completed", "failed"]
_TOOL_CALL_STATES = ("started", "completed", "failed")

_STREAM_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")

#: ``(session_id, stream_id, call_id)``: a tool call's key in the ledger.
CallKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    """One tool call in a store's tool ledger (see :meth:`Store.record_tool_call`).

    :ivar session_id: the session.
    :ivar stream_id: the stream (turn) that made the call.
    :ivar call_id: the tool call's id, unique within the stream (the model's id).
    :ivar name: the tool's name.
    :ivar arguments: the arguments as the turn got them: a JSON object as a ``dict``, or
        a ``str`` kept verbatim (a model's JSON text, even if it does not parse).
    :ivar state: ``"started"`` (intent durable, no result yet), ``"completed"`` or
        ``"failed"``.
    :ivar result: the JSON value of a completed call (``None`` otherwise).
    :ivar error: the error text of a failed call (``None`` otherwise).
    :ivar attempt: the resume attempt of the turn that started the call (0: first run).
    :ivar started_at: epoch seconds when the intent was recorded.
    :ivar finished_at: epoch seconds when the result was recorded (``None`` while started).
    """

    session_id: str
    stream_id: str
    call_id: str
    name: str
    arguments: dict[str, Any] | str
    state: ToolCallState
    result: Any = None
    error: str | None = None
    attempt: int = 0
    started_at: float = 0.0
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON object (every field, by name)."""
        return {
            "session_id": self.session_id,
            "stream_id": self.stream_id,
            "call_id": self.call_id,
            "name": self.name,
            "arguments": self.arguments,
            "state": self.state,
            "result": self.result,
            "error": self.error,
            "attempt": self.attempt,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

    def copy(self) -> ToolCallRecord:
        """A record that shares no ``arguments`` or ``result`` object with this one."""
        return ToolCallRecord.from_dict(orjson.loads(orjson.dumps(self.to_dict())))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ToolCallRecord:
        """Inverse of :meth:`to_dict`.

        :raises ValueError: naming the field, if ``d`` is not a record's shape.
        """
        problem = tool_call_record_error(d)
        if problem is not None:
            raise ValueError(f"invalid tool call record {dict(d)!r}: {problem}")
        return cls(
            d["session_id"],
            d["stream_id"],
            d["call_id"],
            d["name"],
            d["arguments"],
            d["state"],
            d.get("result"),
            d.get("error"),
            d.get("attempt", 0),
            float(d.get("started_at", 0.0)),
            None if d.get("finished_at") is None else float(d["finished_at"]),
        )


def tool_call_record_error(d: object) -> str | None:
    """What is wrong with a decoded ledger record (``None``: nothing), for backends
    that read records back from their own encoding."""
    if not isinstance(d, Mapping):
        return "not an object"
    for key in ("session_id", "stream_id", "call_id", "name"):
        if not isinstance(d.get(key), str):
            return f"{key!r} is {d.get(key)!r}, not a string"
    if not isinstance(d.get("arguments"), dict | str):
        return f"'arguments' is {d.get('arguments')!r}, not an object or a string"
    if d.get("state") not in _TOOL_CALL_STATES:
        return f"'state' is {d.get('state')!r}, not one of {_TOOL_CALL_STATES}"
    if not isinstance(d.get("error"), str | None):
        return f"'error' is {d.get('error')!r}, not a string or null"
    attempt = d.get("attempt", 0)
    if isinstance(attempt, bool) or not isinstance(attempt, int):
        return f"'attempt' is {attempt!r}, not an integer"
    for key, optional in (("started_at", False), ("finished_at", True)):
        value = d.get(key, 0.0)
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{key!r} is {value!r}, not a number"
    return None


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        raise ValueError(f"invalid {what} {value!r}: must be a non-empty string without NUL")
    return value


def check_stream_id(stream_id: object) -> str:
    """:raises ValueError: unless ``stream_id`` matches ``[A-Za-z0-9_.:-]{1,128}``."""
    if not isinstance(stream_id, str) or _STREAM_ID.fullmatch(stream_id) is None:
        raise ValueError(f"invalid stream id {stream_id!r}: must match [A-Za-z0-9_.:-]{{1,128}}")
    return stream_id


def check_call_ids(stream_id: object, call_id: object) -> None:
    """:raises ValueError: for a bad stream id or an empty (or NUL-holding) call id."""
    check_stream_id(stream_id)
    _check_text(call_id, "tool call id")


def new_tool_call(
    session_id: str,
    stream_id: str,
    call_id: str,
    name: str,
    arguments: object,
    attempt: object,
) -> ToolCallRecord:
    """The intent record of :meth:`Store.record_tool_call`, its arguments checked
    (``session_id`` is checked by the store) and copied through JSON.

    :raises ValueError: for a bad ``stream_id`` (``[A-Za-z0-9_.:-]{1,128}``), an empty
        ``call_id`` or ``name``, or a negative ``attempt``.
    :raises TypeError: for ``arguments`` that are neither a JSON-ready dict nor a str.
    """
    check_call_ids(stream_id, call_id)
    _check_text(name, f"tool name of call {call_id!r}")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0:
        raise ValueError(f"invalid attempt {attempt!r}: must be an integer >= 0")
    args: dict[str, Any] | str
    if isinstance(arguments, str):
        try:
            orjson.dumps(arguments)
        except TypeError as exc:
            raise TypeError(f"invalid arguments of tool call {call_id!r}: {exc}") from None
        args = arguments
    elif isinstance(arguments, dict):
        check_json_ready(arguments, f"argument of tool call {call_id!r}:")
        args = orjson.loads(orjson.dumps(arguments))
    else:
        raise TypeError(
            f"invalid arguments {arguments!r} of tool call {call_id!r}: must be a dict "
            "or a JSON string"
        )
    return ToolCallRecord(
        session_id,
        stream_id,
        call_id,
        name,
        args,
        "started",
        attempt=attempt,
        started_at=time.time(),
    )


def finish_tool_call(record: ToolCallRecord, result: Any, error: str | None) -> ToolCallRecord:
    """``record`` with its result (``completed``) or error (``failed``), unless it has
    one already: the first result wins, and ``record`` comes back unchanged."""
    if record.state != "started":
        return record
    if error is not None:
        return replace(record, state="failed", error=error, finished_at=time.time())
    return replace(record, state="completed", result=result, finished_at=time.time())


def _tool_result(call_id: str, result: object, error: object) -> Any:
    """``result`` copied through JSON, as every store keeps it.

    :raises TypeError: if ``result`` is not JSON-ready or ``error`` not a str.
    :raises ValueError: if both are given.
    """
    if error is not None:
        if not isinstance(error, str):
            raise TypeError(f"invalid error {error!r} of tool call {call_id!r}: must be a str")
        if result is not None:
            raise ValueError(
                f"invalid result of tool call {call_id!r}: a failed call (error "
                f"{error!r}) has no result, got {result!r}"
            )
        return None
    try:
        return orjson.loads(orjson.dumps(result))
    except TypeError as exc:
        raise TypeError(
            f"invalid result {result!r} of tool call {call_id!r}: not JSON-ready ({exc})"
        ) from None


@dataclass(frozen=True, slots=True, init=False)
class SaveRequest:
    """The arguments of one :meth:`Store.save`, handed to :meth:`Store._save`.

    ``delta`` is ``None`` for a save that does not say what changed: a backend then
    writes the whole session, or (a checkpoint) everything from the last stored message
    on and every field.
    """

    skip_index: bool
    touch_updated_at: bool
    events: Sequence[Event]
    lease: Lease | None
    lease_mode: LeaseMode
    delta: SaveDelta | None = None
    discard_backup: bool = False

    def __init__(
        self,
        skip_index: bool,
        touch_updated_at: bool,
        events: Sequence[Event],
        lease: Lease | None,
        lease_mode: LeaseMode,
        delta: SaveDelta | None = None,
        discard_backup: bool = False,
    ) -> None:
        # every save builds one: the fields set through their slots, as SaveDelta's
        _set_skip_index(self, skip_index)
        _set_touch(self, touch_updated_at)
        _set_events(self, events)
        _set_lease(self, lease)
        _set_lease_mode(self, lease_mode)
        _set_delta(self, delta)
        _set_discard(self, discard_backup)


_set_skip_index = SaveRequest.__dict__["skip_index"].__set__
_set_touch = SaveRequest.__dict__["touch_updated_at"].__set__
_set_events = SaveRequest.__dict__["events"].__set__
_set_lease = SaveRequest.__dict__["lease"].__set__
_set_lease_mode = SaveRequest.__dict__["lease_mode"].__set__
_set_delta = SaveRequest.__dict__["delta"].__set__
_set_discard = SaveRequest.__dict__["discard_backup"].__set__


@contextmanager
def map_exceptions(mapping: Mapping[type[BaseException], type[Exception]]) -> Iterator[None]:
    """Translate a driver's exceptions into the runtime's error tree at the edge.

    ``with map_exceptions({asyncpg.PostgresError: StoreError}): ...`` re-raises a
    matching exception as the mapped class ``from`` the original, with its message.
    Cancellation and exceptions already in the runtime's tree pass through unchanged.
    """
    try:
        yield
    except Error:
        raise
    except Exception as exc:
        for source, target in mapping.items():
            if isinstance(exc, source):
                raise target(f"{type(exc).__name__}: {exc}") from exc
        raise


def check_lease(
    session_id: str,
    held: HeldLease | None,
    lease: Lease | None,
    mode: LeaseMode,
    active_stream_id: str | None,
) -> None:
    """The lease rule of a conditional write (every backend applies it inside the
    write's transaction or lock).

    ``claim``/``repair`` need the stored lease to be absent, expired or this claim's own;
    ``renew``/``release`` need it to carry ``lease.token`` (expired is fine while no one
    else has claimed it). A write without a lease is not fenced.

    :raises SessionBusy: a claim while another unexpired lease is held.
    :raises LeaseLost: a renewal or release whose token is no longer the stored one.
    """
    if lease is None:
        return
    if mode in ("claim", "repair"):
        if held is not None and held.token != lease.token and held.expires_in > 0:
            raise SessionBusy(session_id, active_stream_id or "(another process)")
    elif held is None or held.token != lease.token:
        raise LeaseLost(
            session_id, "no lease is held" if held is None else f"{held.owner} holds it now"
        )


def plan_save(session: Session, info: StoredInfo | None, request: SaveRequest) -> bool:
    """The content rules of a save, checked against the stored state inside the write:
    refuse an empty overwrite while a stream is pending, set ``updated_at``, and decide
    whether the previous state must be backed up (a shrinking save). Returns that.

    :raises EmptyOverwriteRefused: naming the session and the stored message count.
    :raises WriteConflict: a ``request.delta`` whose ``base`` is not the stored count
        (its ``stored_count`` is that count).
    """
    count = len(session.messages)
    delta = request.delta
    if delta is not None:
        stored = 0 if info is None else info.message_count
        if delta.base != stored:
            raise WriteConflict(
                f"refusing the save of session {session.session_id!r}: its delta counts "
                f"{delta.base} stored messages (base), the store holds {stored}",
                stored_count=stored,
            )
    # An explicit rewrite of the history (discard_backup: an edit, a regenerate) keeps no
    # backup and is not asked the empty-overwrite question, a guard against accidents.
    rewrite = request.discard_backup
    if not rewrite and info is not None and count == 0 and info.message_count > 0:
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
    if request.touch_updated_at:
        session.updated_at = time.time()
    return not rewrite and info is not None and count < info.message_count


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


#: ids :meth:`Store.save` remembers as checked (see ``Store._saved_ids``)
_SAVED_IDS_KEPT = 4096


class Store(ABC):
    """Async persistence for sessions. Use as ``async with store:`` or call
    :meth:`open` / :meth:`aclose`.

    Subclasses implement the underscored hooks; the public methods enforce the
    contract. All methods are coroutines except :meth:`new_session`, which does no I/O.

    :cvar exclusive: True if one process owns the stored sessions while the store is
        open (FileStore's lock), so a stream no task of that process runs is dead.
    :cvar shared: True if several processes may open the same stored sessions at once
        (PostgresStore): leases live in the backend and :meth:`share_new_session`
        makes a new session visible to the others. Capability flag read by
        :mod:`runtime.testing`.
    :cvar writes_deltas: True if the backend's ``_write`` takes ``delta=`` (see
        :class:`SaveDelta`); the ABC checks a delta against the stored count either way.
    :cvar supports_tool_ledger: True if the store keeps the tool ledger: each tool
        call's intent and result, durable, so a resumed turn runs no call twice.
    """

    exclusive: bool = False
    shared: bool = False
    writes_deltas: bool = False
    #: True if the store keeps a tool ledger (:meth:`record_tool_call`,
    #: :meth:`record_tool_result`, :meth:`tool_calls`); read by :mod:`runtime.testing`.
    supports_tool_ledger: ClassVar[bool] = False

    #: idle per-session locks kept at least (pruned once the dict reaches the limit)
    _LOCKS_KEPT = 1024
    #: Rows per :meth:`_list_page` call when the default :meth:`_list_active_page`
    #: filters the listing.
    _ACTIVE_SCAN = 500

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
        self._locks: dict[str, Mutex] = {}
        self._locks_limit = self._LOCKS_KEPT
        #: leases held in this process: ``{session_id: (owner, token, deadline)}``,
        #: deadlines on :attr:`_clock` (used by the default :meth:`_save`)
        self._leases: dict[str, tuple[str, str, float]] = {}
        self._clock: Callable[[], float] = time.monotonic
        self._documents: dict[str, tuple[bytes, int]] = {}
        #: ids that passed :meth:`_check_id` in :meth:`save` (a pure check of the
        #: string; a running turn saves the same id many times); cleared when full
        self._saved_ids: set[str] = set()

    def _session_lock(self, session_id: str) -> Mutex:
        """The lock that serialises writes to one session (a checkpoint and a final
        save, say). Locks stay in a dict so a session's next save reuses its lock; idle
        ones are dropped when the dict reaches a limit that doubles with the number
        still in use (amortised O(1) per save, memory bounded by the busy sessions and
        the leased ones). The lock of a session whose lease this process holds is kept,
        idle or not: its turn saves again at its next checkpoint, and with more live
        turns than ``_LOCKS_KEPT`` a new lock per save would be one more object per
        checkpoint for the collector to promote (W6). A light mutex rather than
        ``anyio.Lock``: every live turn's session holds one, and an ``anyio.Lock`` is
        two objects and a backend lookup per acquire."""
        lock = self._locks.get(session_id)
        if lock is None:
            if len(self._locks) >= self._locks_limit:
                self._prune_locks()
            lock = self._locks[session_id] = Mutex()
        return lock

    def _prune_locks(self) -> None:
        leased = self._leases
        for sid, lock in list(self._locks.items()):
            if lock.idle() and sid not in leased:
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

    async def share_new_session(self, session: Session) -> None:
        """Make a session from :meth:`new_session` fetchable, and startable, by every
        process sharing this store, still without a durable row or file (a store no
        other process opens has nobody to tell: a no-op there). Its first save ends
        the sharing.

        :raises InvalidSessionId: for a bad id, before any I/O.
        :raises StoreClosed: if the store is not open.
        :raises StoreError: if the backend fails.
        """
        self._check_id(session.session_id)
        self._check_open()
        if self.shared:
            await self._share(session)

    async def _share(self, session: Session) -> None:
        """Publish an unsaved new session to the other processes (shared stores)."""
        raise NotImplementedError(f"{type(self).__name__} is shared but cannot share drafts")

    async def save(
        self,
        session: Session,
        *,
        skip_index: bool = False,
        touch_updated_at: bool = True,
        events: Sequence[Event] = (),
        lease: Lease | None = None,
        lease_mode: LeaseMode = "renew",
        delta: SaveDelta | None = None,
        discard_backup: bool = False,
    ) -> None:
        """Save ``session`` atomically and durably: when this returns, a crash at any
        instant leaves the new state; before, the old one. Never a torn one. The checks
        below and the write are one backend operation (no check-then-write race, also
        across processes for a shared store).

        :param skip_index: a checkpoint save: do not update the list index. Backends may
            write only what changed since the last durable write (FileStore appends to a
            journal); such a save persists appended messages, changes to the last message
            and every metadata field. Edit earlier messages with a full save.
        :param touch_updated_at: set ``updated_at`` to now (epoch seconds) first.
        :param events: stream events to persist with this save, keyed by their own
            ``stream_id``, so the stream can be replayed after a restart (see
            :meth:`load_events`); events already persisted (by ``seq``) are skipped.
        :param lease: the lease of the running turn that writes (``None``: not fenced,
            the lease is left as it is).
        :param lease_mode: with ``lease``: ``"claim"`` takes the lease if it is free or
            expired (``start_turn``); ``"renew"`` requires it and extends it by
            ``lease.ttl`` (checkpoints; a shared store may leave the expiry alone until
            a third of the ttl has passed since it last extended it); ``"release"``
            requires it and frees it (the final save); ``"repair"`` takes a free or
            expired lease and frees it in the same write (closing a dead stream).
        :param delta: what changed since the last durable write (see :class:`SaveDelta`),
            so the backend writes only that; ``None`` (a full save): the backend finds
            out or writes everything. With a delta, only ``session.messages[delta.keep:]``
            and ``delta.fields`` are guaranteed to be written besides ``updated_at``.
        :param discard_backup: the save rewrites the history on purpose (a user edited or
            regenerated a message, or cleared the chat): any backup of an earlier state
            is dropped first and none is kept, so ``recover()`` cannot bring the dropped
            messages back (without it, a shrinking save keeps a backup that ``recover()``
            restores while the list is shorter than the backup's; that rule protects
            against accidental truncation, from the hermes-webui chat UI's bug history).
            Such a save may also replace stored messages with ``[]`` while a stream is
            pending. When it returns, no backup of the session exists.

        Credentials in ``session.metadata`` (see ``redact_keys``) are replaced by
        :data:`REDACTED` in ``session`` itself first, so no store ever writes them.

        :raises MetadataOnlySaveError: for a metadata-only session, before any I/O.
        :raises InvalidSessionId: for a bad id, before any I/O.
        :raises ValueError: for an unknown ``lease_mode``, or a ``delta`` whose ``keep``
            exceeds the session's message count, before any I/O.
        :raises WriteConflict: a ``delta`` whose ``base`` is not the stored message
            count; nothing was written.
        :raises EmptyOverwriteRefused: if stored messages would be replaced by ``[]``
            while a stream is pending (active stream or pending message, stored or new).
        :raises SessionBusy: a ``claim``/``repair`` while another process holds an
            unexpired lease; nothing was written.
        :raises LeaseLost: a ``renew``/``release`` whose token is no longer stored;
            nothing was written.
        :raises StoreClosed: if the store is not open.
        :raises StoreError: if the backend fails; the stored state is then the old one.
        """
        if session.metadata_only:
            raise MetadataOnlySaveError(
                f"refusing to save session {session.session_id!r}: it was loaded "
                "metadata-only and saving it would replace its stored messages"
            )
        sid = session.session_id
        if type(sid) is not str or sid not in self._saved_ids:
            self._check_id(sid)
            if len(self._saved_ids) >= _SAVED_IDS_KEPT:
                self._saved_ids.clear()
            self._saved_ids.add(sid)
        if lease_mode not in _LEASE_MODES:
            raise ValueError(f"invalid lease_mode {lease_mode!r}: must be one of {_LEASE_MODES}")
        if delta is not None and delta.keep > len(session.messages):
            raise ValueError(
                f"invalid delta keep {delta.keep} for session {session.session_id!r}: "
                f"must not exceed its {len(session.messages)} messages"
            )
        self._check_open()
        if session.metadata and self.redact_keys:
            redact(session.metadata, self.redact_keys)
        request = SaveRequest(
            skip_index, touch_updated_at, events, lease, lease_mode, delta, discard_backup
        )
        await self._save(session, request)
        self._unsaved.pop(sid, None)

    async def _save(self, session: Session, request: SaveRequest) -> None:
        """The conditional write: check the lease and the content rules against the
        stored state and write, as one operation.

        This default serialises the check and the write with a per-session lock and
        keeps leases in this process: right for a store one process owns. A store that
        several processes share overrides it with a transaction or compare-and-set that
        applies :func:`check_lease` and :func:`plan_save` to the state it locked.
        """
        sid = session.session_id
        async with self._session_lock(sid):
            info = await self._stored_info(sid)
            check_lease(
                sid,
                self._held_lease(sid),
                request.lease,
                request.lease_mode,
                None if info is None else info.active_stream_id,
            )
            backup = plan_save(session, info, request)
            if request.discard_backup and info is not None:
                await self._discard_backup(sid)
            await self._write(
                session,
                skip_index=request.skip_index,
                backup=backup,
                events=request.events,
                **({"delta": request.delta} if self.writes_deltas else {}),
            )
            if request.lease is not None:
                if request.lease_mode in ("claim", "renew"):
                    lease = request.lease
                    self._leases[sid] = (lease.owner, lease.token, self._clock() + lease.ttl)
                else:
                    self._leases.pop(sid, None)

    def _held_lease(self, session_id: str) -> HeldLease | None:
        held = self._leases.get(session_id)
        if held is None:
            return None
        owner, token, deadline = held
        return HeldLease(owner, token, deadline - self._clock())

    async def lease_state(self, session_id: str) -> LeaseState | None:
        """The stored lease of the session's live stream, or ``None`` if none is held.

        A stream whose lease is absent or expired (``expires_in <= 0``) is stale: no
        process runs it any more, and any process may repair it.

        :raises InvalidSessionId: for a bad id, before any I/O.
        :raises StoreClosed: if the store is not open.
        """
        self._check_id(session_id)
        self._check_open()
        held = await self._lease_of(session_id)
        return None if held is None else LeaseState(held.owner, held.expires_in)

    async def renew_lease(self, session_id: str, lease: Lease) -> None:
        """Extend a held lease by ``lease.ttl`` seconds without saving the session
        (the checkpoint coroutine calls it when there is nothing new to save).

        :raises LeaseLost: if the stored lease no longer carries ``lease.token``.
        :raises StoreClosed: if the store is not open.
        """
        self._check_id(session_id)
        self._check_open()
        await self._renew(session_id, lease)

    async def abandon_lease(self, session_id: str, lease: Lease) -> None:
        """Give up ``lease`` without a save: this process's turn ended but its final
        save (which releases the lease) failed. A store that keeps leases in this
        process frees it at once, so the session can be repaired and run again at once;
        a shared store lets it expire after its ttl (a no-op there by default).

        :raises StoreClosed: if the store is not open.
        """
        self._check_id(session_id)
        self._check_open()
        async with self._session_lock(session_id):
            held = self._leases.get(session_id)
            if held is not None and held[1] == lease.token:
                del self._leases[session_id]

    async def _lease_of(self, session_id: str) -> HeldLease | None:
        """The stored lease (default: this process's table)."""
        return self._held_lease(session_id)

    async def _renew(self, session_id: str, lease: Lease) -> None:
        """Renew under the session lock (default: this process's table)."""
        async with self._session_lock(session_id):
            check_lease(session_id, self._held_lease(session_id), lease, "renew", None)
            self._leases[session_id] = (lease.owner, lease.token, self._clock() + lease.ttl)

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
        :raises SessionBusy: while an unexpired lease is held on it.
        """
        self._check_id(session_id)
        self._check_open()
        if self._unsaved.pop(session_id, None) is not None:
            return
        async with self._session_lock(session_id):
            info = await self._stored_info(session_id)
            if info is None:
                raise SessionNotFound(f"no session {session_id!r}")
            held = self._held_lease(session_id)
            if held is not None and held.expires_in > 0:
                raise SessionBusy(session_id, info.active_stream_id or "(another process)")
            await self._delete(session_id)
            self._leases.pop(session_id, None)

    async def list_sessions(
        self, *, limit: int = 50, cursor: str | None = None, active: bool = False
    ) -> SessionPage:
        """One page of stored sessions, metadata-only, newest ``updated_at`` first
        (ties by ``session_id``). Empty "Untitled" sessions are hidden unless a stream is
        active or a message is pending.

        :param limit: rows per page, 1 to 1000.
        :param cursor: ``next_cursor`` of the previous page (of a listing with the same
            ``active``).
        :param active: only the sessions with an active stream (``active_stream_id``
            set: a turn live in some process, or interrupted and neither repaired nor
            resumed yet), in the same order: what a resume sweep reads. A backend with
            an index of them reads only those (PostgresStore); the default pages through
            every session.
        :raises ValueError: for a bad ``limit``.
        :raises InvalidCursor: for a cursor this store did not hand out.
        """
        check_limit(limit)
        after = None if cursor is None else decode_cursor(cursor)
        self._check_open()
        if active:
            rows = await self._list_active_page(limit, after)
            more = len(rows) == limit and bool(
                await self._list_active_page(1, (rows[-1].updated_at, rows[-1].session_id))
            )
        else:
            rows = await self._list_page(limit, after)
            more = len(rows) == limit and await self._has_more(rows[-1])
        next_cursor = None
        if more:
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

    # -- the tool ledger: each tool call's intent and result, durable ---------------

    def _check_ledger(self) -> None:
        if not self.supports_tool_ledger:
            raise NotImplementedError(
                f"{type(self).__name__} has no tool ledger (supports_tool_ledger is False)"
            )

    async def record_tool_call(
        self,
        session_id: str,
        stream_id: str,
        call_id: str,
        name: str,
        arguments: dict[str, Any] | str,
        *,
        attempt: int = 0,
        lease: Lease | None = None,
    ) -> ToolCallRecord:
        """Make the intent of a tool call durable before the tool runs; returns the
        stored record.

        If the ledger already holds ``(session_id, stream_id, call_id)`` that record
        comes back unchanged (nothing is written): its ``state`` tells a resumed turn
        that the call already started (``"started"``: outcome unknown) or finished, and
        its ``attempt`` which attempt started it (a new record carries ``attempt``).

        :param arguments: the arguments as the turn got them: a JSON-ready ``dict`` or a
            ``str`` kept verbatim.
        :param attempt: the resume attempt of the turn (0: first run).
        :param lease: the running turn's lease: the write is fenced like a checkpoint.
        :raises NotImplementedError: if the store has no ledger (``supports_tool_ledger``).
        :raises InvalidSessionId: for a bad session id; :class:`ValueError` for a bad
            ``stream_id`` (``[A-Za-z0-9_.:-]{1,128}``), an empty ``call_id`` or ``name``,
            a negative ``attempt``; :class:`TypeError` for arguments that are not
            JSON-ready. All before any I/O.
        :raises SessionNotFound: if the session is not stored (a ledger belongs to a
            saved session); nothing was written.
        :raises LeaseLost: if ``lease`` is given and the stored lease is not its token;
            nothing was written.
        :raises StoreError: if the backend fails or the store is read-only.
        :raises StoreClosed: if the store is not open.
        """
        self._check_ledger()
        self._check_id(session_id)
        record = new_tool_call(session_id, stream_id, call_id, name, arguments, attempt)
        self._check_open()
        return await self._start_tool_call(record, lease)

    async def record_tool_result(
        self,
        session_id: str,
        stream_id: str,
        call_id: str,
        *,
        result: Any = None,
        error: str | None = None,
        lease: Lease | None = None,
    ) -> ToolCallRecord:
        """Make the result of a tool call durable; returns the stored record, state
        ``"completed"`` (with ``result``) or ``"failed"`` (with ``error``).

        The first result wins: if the call already has one, the stored record comes
        back unchanged and nothing is written.

        :param result: the tool's result, a JSON-ready value (stored as its JSON, so a
            tuple comes back as a list).
        :param error: the error text of a failed call (then ``result`` must be ``None``).
        :param lease: the running turn's lease: the write is fenced like a checkpoint.
        :raises NotImplementedError: if the store has no ledger (``supports_tool_ledger``).
        :raises TypeError: for a ``result`` that is not JSON-ready or an ``error`` that is
            not a ``str``; :class:`ValueError` for both, or for bad ids. Before any I/O.
        :raises ToolCallNotFound: if no intent was recorded for the call; nothing was
            written.
        :raises SessionNotFound: if the session is not stored; nothing was written.
        :raises LeaseLost: if ``lease`` is given and the stored lease is not its token;
            nothing was written.
        :raises StoreError: if the backend fails or the store is read-only.
        :raises StoreClosed: if the store is not open.
        """
        self._check_ledger()
        self._check_id(session_id)
        check_call_ids(stream_id, call_id)
        value = _tool_result(call_id, result, error)
        self._check_open()
        return await self._finish_tool_call((session_id, stream_id, call_id), value, error, lease)

    async def tool_calls(self, session_id: str, stream_id: str) -> list[ToolCallRecord]:
        """Every ledger record of a stream of this session, in the order the calls
        started (``[]`` if none, or if the session is not stored).

        :raises NotImplementedError: if the store has no ledger (``supports_tool_ledger``).
        :raises InvalidSessionId: for a bad id, before any I/O.
        :raises ValueError: for a bad ``stream_id``, before any I/O.
        :raises StoreClosed: if the store is not open.
        """
        self._check_ledger()
        self._check_id(session_id)
        check_stream_id(stream_id)
        self._check_open()
        return await self._tool_calls(session_id, stream_id)

    async def _start_tool_call(self, record: ToolCallRecord, lease: Lease | None) -> ToolCallRecord:
        """Record an intent unless the call is recorded: the lease check, the lookup and
        the write as one operation. This default serialises them with the session lock
        and this process's lease table (a store one process owns, like :meth:`_save`);
        a shared store overrides it with a transaction."""
        key = (record.session_id, record.stream_id, record.call_id)
        return await self._ledger_change(key, lease, lambda stored: stored or record)

    async def _finish_tool_call(
        self, key: CallKey, result: Any, error: str | None, lease: Lease | None
    ) -> ToolCallRecord:
        """Record a result unless the call has one (see :meth:`_start_tool_call`);
        :class:`ToolCallNotFound` without an intent."""

        def finish(stored: ToolCallRecord | None) -> ToolCallRecord:
            if stored is None:
                raise tool_call_not_found(*key)
            return finish_tool_call(stored, result, error)

        return await self._ledger_change(key, lease, finish)

    async def _ledger_change(
        self,
        key: CallKey,
        lease: Lease | None,
        change: Callable[[ToolCallRecord | None], ToolCallRecord],
    ) -> ToolCallRecord:
        sid = key[0]
        self._writable()
        async with self._session_lock(sid):
            if await self._stored_info(sid) is None:
                raise not_found(sid)
            check_lease(sid, self._held_lease(sid), lease, "renew", None)
            stored = await self._ledger_get(*key)
            record = change(stored)
            if record is not stored:
                await self._ledger_put(record)
            return record

    def _writable(self) -> None:  # noqa: B027 - optional hook
        """Raise :class:`StoreError` if this store may not write (opened read-only)."""

    async def _ledger_get(
        self, session_id: str, stream_id: str, call_id: str
    ) -> ToolCallRecord | None:
        """The stored record of one call (for the default :meth:`_ledger_change`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _ledger_get")

    async def _ledger_put(self, record: ToolCallRecord) -> None:
        """Store ``record`` durably, replacing that call's (for :meth:`_ledger_change`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _ledger_put")

    async def _tool_calls(self, session_id: str, stream_id: str) -> list[ToolCallRecord]:
        """The stream's records in start order."""
        raise NotImplementedError(f"{type(self).__name__} must implement _tool_calls")

    # -- documents: small named blobs beside the sessions (the route table) --------

    async def read_document(self, name: str) -> tuple[bytes, int] | None:
        """A named document and its version, or ``None`` if there is none.

        Documents hold small derived tables that must live wherever the sessions live
        (the gateway route table): a name, bytes, a version that every write bumps.

        :raises ValueError: if ``name`` is not ``[a-z0-9_.-]{1,64}`` without a leading dot.
        :raises StoreClosed: if the store is not open.
        :raises StoreError: if the backend fails.
        """
        _check_document_name(name)
        self._check_open()
        return await self._read_document(name)

    async def write_document(self, name: str, data: bytes, *, expected_version: int | None) -> int:
        """Replace a document atomically and durably if its version is still
        ``expected_version`` (``None``: it must not exist yet); returns the new version.

        :raises WriteConflict: if another writer changed it; nothing was written.
        :raises ValueError: for a bad ``name`` or ``data`` that is not ``bytes``.
        :raises StoreClosed: if the store is not open.
        :raises StoreError: if the backend fails; the document is then unchanged.
        """
        _check_document_name(name)
        if not isinstance(data, bytes):
            raise ValueError(f"invalid document data {type(data).__name__}: must be bytes")
        self._check_open()
        return await self._write_document(name, data, expected_version)

    async def _read_document(self, name: str) -> tuple[bytes, int] | None:
        """Default: documents in this process (a store whose data lives in the object)."""
        return self._documents.get(name)

    async def _write_document(self, name: str, data: bytes, expected: int | None) -> int:
        """Default: compare-and-set under this process's lock (an exclusive store)."""
        async with self._session_lock("\0doc:" + name):
            current = await self._read_document(name)
            check_document_version(name, current, expected)
            version = 1 if current is None else current[1] + 1
            await self._store_document(name, data, version)
            return version

    async def _store_document(self, name: str, data: bytes, version: int) -> None:
        """Persist a document (default: in this process)."""
        self._documents[name] = (data, version)

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
        state first when ``backup``. A backend whose class sets :attr:`writes_deltas`
        also gets ``delta=`` (a :class:`SaveDelta` already checked against the stored
        count, or ``None``) and may write only what it names; writing the whole
        session is always correct."""

    async def _discard_backup(self, session_id: str) -> None:
        """Remove the backup of a stored session durably, if it has one (a save with
        ``discard_backup=True`` calls it under the session's lock, before its write).

        A backend that keeps backups must implement it (or apply the rule inside its
        own :meth:`_save`); this default refuses, so that a rewrite of the history never
        leaves a backup ``recover()`` would restore.

        :raises NotImplementedError: always, naming the backend.
        """
        raise NotImplementedError(
            f"{type(self).__name__} cannot discard a backup: a save with "
            "discard_backup=True needs _discard_backup() (or its own _save())"
        )

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

    async def _list_active_page(self, limit: int, after: tuple[float, str] | None) -> list[Session]:
        """Up to ``limit`` sessions with an active stream after the keyset ``after``,
        metadata-only. This default filters the pages of :meth:`_list_page` (a session
        with an active stream is always visible); a backend that can select them
        directly overrides it."""
        out: list[Session] = []
        scan = max(limit, self._ACTIVE_SCAN)
        while True:
            rows = await self._list_page(scan, after)
            for row in rows:
                if row.active_stream_id is not None:
                    out.append(row)
                    if len(out) == limit:
                        return out
            if len(rows) < scan:
                return out
            after = (rows[-1].updated_at, rows[-1].session_id)

    @abstractmethod
    async def _recover(self) -> RecoveryReport:
        """Backend recovery."""

    @abstractmethod
    async def _load_events(self, session_id: str, stream_id: str, after_seq: int) -> list[Event]:
        """Persisted events of the stream after ``after_seq``."""


_DOCUMENT_NAME = re.compile(r"[a-z0-9_-][a-z0-9_.-]{0,63}")


def _check_document_name(name: object) -> None:
    if not isinstance(name, str) or _DOCUMENT_NAME.fullmatch(name) is None:
        raise ValueError(
            f"invalid document name {name!r}: must match [a-z0-9_.-]{{1,64}}, no leading dot"
        )


def check_document_version(
    name: str, current: tuple[bytes, int] | None, expected: int | None
) -> None:
    """:raises WriteConflict: unless the stored version is ``expected``."""
    found = None if current is None else current[1]
    if found != expected:
        raise WriteConflict(
            f"document {name!r} is at version {found}, not {expected}: another writer changed it"
        )


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


def tool_call_not_found(session_id: str, stream_id: str, call_id: str) -> ToolCallNotFound:
    """The error for a result whose call has no recorded intent."""
    return ToolCallNotFound(
        f"no intent recorded for tool call {call_id!r} of stream {stream_id!r} in session "
        f"{session_id!r}: call record_tool_call() before recording its result"
    )
