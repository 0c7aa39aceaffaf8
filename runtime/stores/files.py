"""``FileStore``: the embedded default store, human-readable files under one root.

Layout of ``<root>/sessions/`` (also written to ``_README`` there):

* ``<id>.json`` — snapshot: the session's fields, ``gen`` and all ``messages``;
* ``<id>.journal`` — checkpoint journal: one JSON line per checkpoint of generation
  ``gen`` (``base``: keep that many messages, then append ``messages``; changed
  fields; the stream's new ``events`` as records: a run of tokens is one record, see
  :func:`runtime._events.event_records`). Lines of another generation are ignored;
* ``<id>.json.bak`` — the state before a save that shrank the message list;
* ``<id>.ledger.jsonl`` — the tool ledger: one JSON line per tool call intent or
  result (see :mod:`runtime.stores._file_ledger`); created by the first record;
* ``<id>.events.jsonl`` — the durable events of the session's latest stream, one
  record a line, after a header ``{"stream_id", "id", "base"}``: written just before a
  snapshot whose ``events_id`` names it; while the snapshot names another (a crash
  between the two renames), only the first ``base`` records count;
* ``_index.jsonl`` (derived, rebuilt when missing or corrupt), ``_deleted.jsonl``
  (tombstones), ``_lock`` (one process per root).

Every blocking file call goes through :mod:`runtime.stores._fileio`; tests kill the
process or fail a call at a named step of it with :mod:`runtime.stores.faults`
(environment variable ``RUNTIME_FILESTORE_FAULT``, read once at :meth:`FileStore.open`).

A checkpoint (``save(skip_index=True)``) appends one line and fdatasyncs it, so its
cost is O(new data), not O(history). A full save compacts: new snapshot with the
next ``gen`` (temp file, fsync, rename, directory fsync), then the journal is
emptied. A torn last journal line (a crash mid-append) is ignored on load. A load
that replayed a long journal (see ``load_compact_ratio``) schedules the same
compaction in the background, under the session's save lock, while no lease is held
on the session: the next load reads the snapshot alone.

The blocking file work of each call runs in one hop off the event loop: on the
store's own I/O thread (:class:`~runtime.stores._iothread.IOThread`) when it is idle,
else in anyio's worker pool. Journal descriptors stay open between checkpoints
(:class:`~runtime.stores._fileio.AppendFds`).
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import math
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import anyio
import orjson

from .._config import default_root
from .._events import Event, event_records, events_from_records, record_last_seq, records_after
from .._exceptions import CorruptSession, InvalidSessionId, StoreError, StoreLocked
from .._session import META_FIELDS, Session
from .._timer import asyncio_loop
from . import _fileio as fio
from . import faults
from ._file_index import SessionIndex
from ._file_ledger import Ledger, encode_record, read_ledger
from ._file_recovery import read_backup, recover_directory
from ._iothread import IOThread
from .abc import RecoveryReport, SaveDelta, Store, StoredInfo, ToolCallRecord, not_found

__all__ = ["FileStore", "JournalInfo"]

logger = logging.getLogger("runtime.stores.files")

_README = """\
This directory is a runtime FileStore (one process at a time; see _lock).
  <id>.json          snapshot of a session: its fields, "gen" and every message
  <id>.journal       checkpoints since that snapshot, one JSON line each; only lines whose
                     "gen" equals the snapshot's apply ("base" = messages kept, then appended)
  <id>.json.bak      the state before a save that shrank the messages; startup recovery
                     restores it if the live file holds fewer messages
  <id>.events.jsonl  durable events of the session's latest stream (for SSE replay), one per
                     line or a run of tokens per line ("texts", "ts": lists from "seq" on);
                     only the first "base" lines count unless the snapshot's "events_id" is
                     its "id"
  <id>.ledger.jsonl  tool ledger: one line per tool call intent or result (latest wins per
                     stream_id and call_id, except that a call's first result is kept)
  _index.jsonl       derived list index (safe to delete: it is rebuilt)
  _deleted.jsonl     tombstones: deleted sessions are never recovered
Names starting with "_" or "." are never sessions. List sessions with: runtime sessions list
"""

T = TypeVar("T")

_FORCE_COMPACT = 1 << 62  # a journal size no checkpoint appends to
#: bytes of the read buffer a store keeps for loads from the page cache: a bigger
#: snapshot and journal are read into a new buffer, whose zero-filling is small beside
#: their parse
_SCRATCH_MAX = 2 << 20

_META_KEYS = tuple(k for k in META_FIELDS if k != "updated_at")
_TIME_TYPES = (float, int)  # exact types of a decoded time (bool is neither)
_TIME_TYPE_SET = frozenset(_TIME_TYPES)


def os_error(exc: OSError) -> StoreError:
    """``exc`` as a :class:`StoreError` naming the file and the cause."""
    code = errno.errorcode.get(exc.errno or 0, "")
    cause = exc.strerror or str(exc)
    where = exc.filename if exc.filename is not None else "the store"
    return StoreError(f"{where}: {cause}" + (f" ({code})" if code else ""))


def _journal_record_error(rec: dict[str, Any], count: int) -> str | None:
    """What is wrong with a decoded journal record of the current generation."""
    base = rec.get("base")
    if isinstance(base, bool) or not isinstance(base, int) or not 0 <= base <= count:
        return f"'base' is {base!r}, not an integer from 0 to {count}"
    messages = rec.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return "'messages' is not a list of objects"
    updated_at = rec.get("updated_at")
    if isinstance(updated_at, bool) or not isinstance(updated_at, int | float):
        return f"'updated_at' is {updated_at!r}, not a number"
    meta = rec.get("meta")
    if meta is not None and not isinstance(meta, dict):
        return f"'meta' is {meta!r}, not an object"
    events = rec.get("events")
    if events is not None and not (
        isinstance(events, list) and isinstance(rec.get("stream_id"), str)
    ):
        return "'events' is not a list with a 'stream_id'"
    return None


class JournalInfo(NamedTuple):
    """A session's files as :meth:`FileStore.journal_info` found them."""

    gen: int  #: the snapshot's generation (each compaction adds one)
    snapshot_bytes: int  #: bytes of ``<id>.json``
    journal_bytes: int  #: bytes of ``<id>.journal`` (0: compacted, no checkpoint since)
    journal_records: int  #: journal lines of the snapshot's generation (decodable ones)


class _Replayed(NamedTuple):
    """What :func:`_replay` found beside the session it rebuilt."""

    clean: bool  # nothing dropped: neither a torn tail nor a damaged line
    has_events: bool  # a record of this generation holds events
    damage: tuple[int, int, str] | None  # (line, lines dropped, problem) of a damaged line
    problem: str | None  # what is wrong with the fields the records changed
    events_id: Any  # the snapshot's "events_id", as stored
    lines: int  # journal lines decoded


class _Appended(NamedTuple):
    messages: list[dict[str, Any]]  # the records' messages, in order
    updated_at: float | int  # the last record's
    has_events: bool


_PLAIN = itemgetter("gen", "base", "messages", "updated_at")
_EVENTS = itemgetter("events", "stream_id")


def _appended(records: list[Any], gen: object, count: int) -> _Appended | None:
    """What a journal of plain appends adds to ``count`` messages, checked in bulk: every
    record is of generation ``gen``, holds exactly the fields a checkpoint of appended
    messages writes (``gen``, ``base``, ``messages``, ``updated_at``, and maybe
    ``events`` with ``stream_id``) with the right types, and its ``base`` is the count
    the records before it left. ``None`` for anything else (or no records): the caller
    then applies the records one by one, which finds and names any problem. A loop
    over the records in C (``map``, ``set``, ``itemgetter``) instead of Python
    bytecode per record: the same verdict, for a few times less work."""
    if not records:
        return None
    try:
        gens, bases, news, times = zip(*map(_PLAIN, records), strict=True)
    except (KeyError, TypeError):  # a field missing, or a record not an object
        return None
    sizes = set(map(len, records))
    if sizes == {4}:
        has_events = False
    elif sizes == {6} or sizes == {4, 6}:
        try:
            events, streams = zip(*map(_EVENTS, [r for r in records if len(r) == 6]), strict=True)
        except KeyError:
            return None
        if set(map(type, events)) != {list} or set(map(type, streams)) != {str}:
            return None
        has_events = any(events)
    else:
        return None
    if (
        gens.count(gen) != len(gens)
        or set(map(type, bases)) != {int}
        or set(map(type, news)) != {list}
        or not set(map(type, times)) <= _TIME_TYPE_SET
        or list(bases) != list(accumulate(map(len, news), initial=count))[:-1]
    ):
        return None
    added = list(chain.from_iterable(news))
    if not set(map(type, added)) <= {dict}:
        return None
    return _Appended(added, times[-1], has_events)


def _replay(d: dict[str, Any], lines: fio.JsonLines) -> _Replayed:
    """Apply the decoded journal ``lines``' records of the snapshot's generation to
    ``d`` (a decoded snapshot) in place and make it the session's dict (``format``,
    ``gen`` and ``events_id`` taken out, ``message_count`` set). No I/O: the caller
    logs and quarantines a damaged journal and raises for bad fields."""
    gen = d.get("gen", 0)
    messages: list[dict[str, Any]] = d["messages"]
    has_events = False
    has_meta = False
    damage = None
    clean = lines.clean
    appended = _appended(lines.records, gen, len(messages))
    records = () if appended is not None else lines.records
    if appended is not None:
        messages.extend(appended.messages)
        d["updated_at"] = appended.updated_at
        has_events = appended.has_events
    for number, rec in enumerate(records, 1):
        if not isinstance(rec, dict) or rec.get("gen") != gen:
            continue
        # what a checkpoint writes passes these few exact-type tests; anything else gets
        # the full check, which names the problem (the same verdict, at a third the cost)
        base = rec.get("base")
        new = rec.get("messages")
        if not (
            type(base) is int
            and 0 <= base <= len(messages)
            and type(new) is list
            and (not new or (len(new) == 1 and type(new[0]) is dict))
            and type(rec.get("updated_at")) in _TIME_TYPES
            and (
                len(rec) == 4  # gen, base, messages, updated_at
                or (
                    len(rec) == 6
                    and type(rec.get("events")) is list
                    and type(rec.get("stream_id")) is str
                )
            )
        ):
            problem = _journal_record_error(rec, len(messages))
            if problem is not None:
                damage = (number, len(lines.records) - number + 1, problem)
                clean = False
                break
        del messages[rec["base"] :]
        messages.extend(rec["messages"])
        d["updated_at"] = rec["updated_at"]
        if "meta" in rec:
            d.update(rec["meta"])
            has_meta = True
        has_events = has_events or bool(rec.get("events"))
    else:
        if lines.damaged_line is not None:
            damage = (lines.damaged_line, lines.dropped, "not valid JSON")
    # the journal's messages and times were checked record by record; the fields
    # its records changed are not yet
    problem = fio.field_error(d, messages=False) if has_meta else None
    d.pop("format", None)
    d.pop("gen", None)
    events_id = d.pop("events_id", None)
    d["message_count"] = len(messages)
    return _Replayed(clean, has_events, damage, problem, events_id, len(lines.records))


def _meta(session: Session) -> dict[str, Any]:
    return {k: getattr(session, k) for k in _META_KEYS}


@dataclass(slots=True)
class _Durable:
    """What is durable on disk for one session, as this process last wrote or read it."""

    gen: int
    count: int
    row: dict[str, Any]  # the session's metadata row (index form)
    bak_count: int | None  # messages in <id>.json.bak, None if there is none
    journal_bytes: int
    snapshot_bytes: int
    journal_lines: int  # lines in the first journal_bytes (one per checkpoint)
    journal_events: bool  # the journal holds events of this generation
    events_id: str | None  # the id of the events file written with this snapshot

    def info(self) -> StoredInfo:
        return StoredInfo(
            self.count, self.row.get("active_stream_id"), self.row.get("pending_user_message")
        )


class FileStore(Store):
    """Sessions as files under ``<root>/sessions/``; see the module docstring.

    :param root: the store root (default ``$RUNTIME_HOME`` or ``./.runtime``).
    :param compact_bytes: a checkpoint compacts instead of appending once the journal
        exceeds this many bytes and the snapshot's size (amortised O(1) per byte).
    :param load_compact_ratio: a load that replayed a journal of at least
        ``load_compact_records`` records holding at least this fraction of the
        snapshot's bytes schedules a compaction of the session in the background (a
        positive number; ``None``: never). Default 0.1: each journal record costs a
        load about 12k instructions beyond its message (the record's object, its
        check), so a journal of a tenth of a small session's bytes (5 records of
        1.25 KB beside 100 messages) costs its load ~10 % against the same messages
        compacted, about all that a compacted load (1.11x a bare ``orjson.loads``)
        leaves of a 1.2x budget; below that the rewrite (every message written, three
        syncs) costs more than the loads it spares.
        Modelled on Redis's AOF rewrite (a log rewritten once it outgrows its base by
        a percentage) and LevelDB's seek-triggered compaction (reads that pay for
        extra files schedule one). Asyncio only: on trio nothing is scheduled.
    :param load_compact_records: the fewest journal records a load must replay to
        schedule that compaction (an integer >= 1; default 4: one record of a big
        message is parsed as fast from the journal as from the snapshot).
    :param redact_keys: metadata keys whose values never reach disk (see
        :class:`~runtime.stores.abc.Store`).
    :param ledger_streams: tool ledgers kept per session: those of the latest
        ``ledger_streams`` streams at least; once ``<id>.ledger.jsonl`` holds twice as
        many, the first record of another stream rewrites it without the older ones
        (a resumed turn needs only the latest stream's). At least 1.
    :param read_only: open without the lock, beside the process that owns the root
        (e.g. ``runtime serve``), to read sessions: nothing is created or written, every
        write raises :class:`StoreError`, and a stream is not assumed dead because this
        process does not run it (``exclusive`` is false). Reads see what the owner has
        made durable; the session list is the index as it was when opened.

    The root and ``sessions/`` are created ``0700`` and every file ``0600``.
    :raises StoreLocked: from :meth:`open` if another process holds the root.
    """

    exclusive = True  # one process per root (the _lock file)
    writes_deltas = True  # a checkpoint journals only what the SaveDelta names
    supports_tool_ledger = True

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        compact_bytes: int = 4 << 20,
        redact_keys: Iterable[str] | None = None,
        read_only: bool = False,
        ledger_streams: int = 4,
        load_compact_ratio: float | None = 0.1,
        load_compact_records: int = 4,
    ) -> None:
        super().__init__(redact_keys=redact_keys)
        if load_compact_ratio is not None and (
            isinstance(load_compact_ratio, bool)
            or not isinstance(load_compact_ratio, int | float)
            or not math.isfinite(load_compact_ratio)
            or load_compact_ratio <= 0
        ):
            raise ValueError(
                f"invalid load_compact_ratio {load_compact_ratio!r}: must be a finite "
                "number > 0, or None to never compact after a load"
            )
        self.load_compact_ratio = load_compact_ratio
        self.load_compact_records = _positive_int(load_compact_records, "load_compact_records")
        self.ledger_streams = _positive_int(ledger_streams, "ledger_streams")
        self.read_only = read_only
        self.exclusive = not read_only
        self.root = Path(root) if root is not None else default_root()
        self.dir = self.root / "sessions"
        self.compact_bytes = compact_bytes
        self._index = SessionIndex(self.dir / "_index.jsonl")
        self._durable: dict[str, _Durable] = {}
        # held by the I/O threads' writes of _durable (a load's is conditional)
        self._durable_lock = threading.Lock()
        self._ledgers: dict[str, Ledger] = {}  # folded <id>.ledger.jsonl, as on disk
        self._tombstones: set[str] = set()
        self._lock_fd: int | None = None
        self._io = IOThread(f"runtime FileStore I/O {self.root}")
        self._fds = fio.AppendFds()
        self._reads = fio.ReadFds()  # snapshot and journal descriptors kept for loads
        self._loads_page_cache = 0  # loads read on the loop's thread (see _read_cached)
        self._scratch = bytearray()  # those loads' read buffer, reused (loop only)
        self._loads_io_thread = 0
        # compactions scheduled by loads, by session id (see _after_load)
        self._compactions: dict[str, asyncio.Task[None]] = {}
        self._compactions_after_load = 0
        self._closing = False
        self._prefix = f"{self.dir}{os.sep}"  # + "<id><suffix>": the hot paths skip pathlib

    def __repr__(self) -> str:
        return f"FileStore({str(self.root)!r})"

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking file work off the event loop; an ``OSError`` (ENOSPC, EIO,
        EACCES, ENOTDIR, …) comes out as :class:`StoreError` naming the path and the
        cause, so callers see one error tree whatever the disk did."""
        try:
            return await self._io.run(fn, *args)
        except OSError as exc:
            raise os_error(exc) from exc

    def _check_id(self, session_id: str) -> str:
        sid = super()._check_id(session_id)
        if sid.startswith("_"):
            raise InvalidSessionId(
                f"invalid session id {sid!r}: FileStore reserves names starting with '_' "
                "for its own files (_index.jsonl, _README, ...)"
            )
        return sid

    # -- paths -----------------------------------------------------------------------

    def _snap(self, sid: str) -> Path:
        return self.dir / f"{sid}.json"

    def _journal(self, sid: str) -> Path:
        return self.dir / f"{sid}.journal"

    def _bak(self, sid: str) -> Path:
        return self.dir / f"{sid}.json.bak"

    def _events(self, sid: str) -> Path:
        return self.dir / f"{sid}.events.jsonl"

    def _ledger(self, sid: str) -> Path:
        return self.dir / f"{sid}.ledger.jsonl"

    def _path(self, sid: str, suffix: str) -> str:
        """``<dir>/<sid><suffix>`` as a string, for the calls made on every save or load."""
        return f"{self._prefix}{sid}{suffix}"

    # -- lifecycle -------------------------------------------------------------------

    async def _open(self) -> None:
        await self._run(self._open_read_only_sync if self.read_only else self._open_sync)

    def _open_read_only_sync(self) -> None:
        if not self.dir.is_dir():
            raise StoreError(f"no FileStore at {str(self.root)!r}: {self.dir} is not a directory")
        self._load_tombstones_sync()
        if not self._index.load():
            self._index._set(self._scan_rows_sync())  # in memory only

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError(f"store root {str(self.root)!r} was opened read-only")

    def _open_sync(self) -> None:
        faults.install_from_env()  # a crash-torture child's kill step (see faults.py)
        try:
            self.root.parent.mkdir(parents=True, exist_ok=True)
            self.root.mkdir(mode=fio.DIR_MODE, exist_ok=True)
            self.dir.mkdir(mode=fio.DIR_MODE, exist_ok=True)
            os.chmod(self.dir, fio.DIR_MODE)  # ours alone, even if made by an older version
        except OSError as exc:
            raise StoreError(f"cannot create store directory {self.dir}: {exc}") from exc
        fd = os.open(self.dir / "_lock", os.O_RDWR | os.O_CREAT, fio.FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StoreLocked(
                f"store root {str(self.root)!r} is in use by another process (pid {holder}); "
                "one process may own a FileStore root at a time: stop that process, or "
                "give this one another root"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd
        readme = self.dir / "_README"
        if not readme.exists():
            fio.atomic_write(readme, _README.encode())
        self._load_tombstones_sync()
        existed = self._index.path.exists()
        if not self._index.load():
            if existed:
                logger.warning("session index %s is corrupt: rebuilding", self._index.path)
            self._rebuild_index_sync()

    async def _close(self) -> None:
        self._closing = True  # a compaction not started yet is dropped
        with anyio.CancelScope(shield=True):
            await self.wait_compactions()
        if self._lock_fd is not None:  # writable and opened: leave a short index log
            try:
                with anyio.CancelScope(shield=True):
                    await self._run(self._index.compact_if_long)
            except StoreError as exc:  # the log stays: the next open replays it
                logger.warning("session index not compacted at close: %s", exc)
        self._io.close()
        self._fds.close()
        self._reads.close()
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # releases the flock; closing an fd does not block

    def _load_tombstones_sync(self) -> None:
        for rec in fio.json_lines(fio.read_bytes(self.dir / "_deleted.jsonl") or b""):
            if isinstance(rec, dict) and isinstance(rec.get("session_id"), str):
                if rec.get("undeleted"):
                    self._tombstones.discard(rec["session_id"])
                else:
                    self._tombstones.add(rec["session_id"])

    def _rebuild_index_sync(self) -> None:
        self._index.replace_all(self._scan_rows_sync())

    def _scan_rows_sync(self) -> dict[str, dict[str, Any]]:
        """The index rows of every readable session file."""
        rows: dict[str, dict[str, Any]] = {}
        for entry in os.scandir(self.dir):
            name = entry.name
            if name.startswith(("_", ".")) or not name.endswith(".json"):
                continue
            sid = name[:-5]
            try:
                state = self._read_state_sync(sid)
            except (StoreError, OSError) as exc:
                logger.error("skipping unreadable session %s: %s", sid, exc)
                continue
            if state is not None:
                rows[sid] = state[1].row
        return rows

    # -- reading ---------------------------------------------------------------------

    def _read_session_sync(self, sid: str) -> dict[str, Any] | None:
        """The session as a dict (snapshot plus journal), or ``None`` if there is none.

        When this process owns the root and holds the session's durable state (it wrote
        or read it since :meth:`open`), that state is trusted for what it says about the
        other files: an empty journal is not opened, the ``.bak`` is not probed, and the
        cache is left alone. A snapshot of another generation (a save replaced it
        meanwhile) is read in full like an unknown one. The descriptors read stay open
        (in ``_reads``) for the next load's :meth:`_read_cached`."""
        if self.read_only:
            state = self._read_state_sync(sid)
        else:
            state = self._read_state_sync(sid, self._durable.get(sid), keep_fds=True)
        return None if state is None else state[0]

    def _read_cached(self, sid: str) -> dict[str, Any] | None:
        """The session as a dict, read in the calling thread (the event loop's) from the
        page cache through descriptors an earlier load kept, never waiting for the disk
        (:func:`~runtime.stores._fileio.read_session_nowait`); ``None`` when that is not
        possible (nothing kept, a page not cached, a replaced snapshot, anything but a
        clean journal): the caller then reads it in the I/O thread, which also logs,
        quarantines and raises what needs it.

        It reads exactly the durable state this process holds (``snapshot_bytes`` of the
        snapshot of generation ``gen``, the first ``journal_bytes`` of the journal), so
        a save running meanwhile in the I/O thread yields that state or ``None``: a
        checkpoint only appends; a compaction empties the journal (a short read) and
        changes ``gen``; one save of a session runs at a time, and none starts while
        this runs on the loop."""
        known = None if self.read_only else self._durable.get(sid)
        if known is None or known.journal_bytes >= _FORCE_COMPACT:
            return None
        fds = self._reads.take(sid)
        if fds is None:
            return None
        if fds.gen != known.gen:  # compacted since: the descriptor reads an old inode
            fio.close_session_fds(fds)
            return None
        try:
            d = self._decode_cached(sid, fds, known)
        finally:
            self._reads.keep(sid, fds)
        if d is None:
            return None
        now = self._durable.get(sid)
        return d if now is not None and now.gen == known.gen else None

    def _decode_cached(
        self, sid: str, fds: fio.SessionFds, known: _Durable
    ) -> dict[str, Any] | None:
        need = known.snapshot_bytes + known.journal_bytes + 3
        scratch = self._scratch
        if len(scratch) < need <= _SCRATCH_MAX:
            # zero-filled once here, not on every load (see read_session_nowait)
            scratch = self._scratch = bytearray(min(max(need, 2 * len(scratch)), _SCRATCH_MAX))
        decoded = fio.read_session_nowait(
            fds.snapshot,
            known.snapshot_bytes,
            fds.journal,
            known.journal_bytes,
            known.journal_lines,
            scratch,
        )
        if decoded is None:
            return None
        d = decoded[0]
        # changed behind the store's back: the I/O thread reports it
        if type(d) is not dict or fio.field_error(d) is not None:
            return None
        if d.get("session_id", sid) != sid or d.get("gen", 0) != known.gen:
            return None
        del decoded[0]
        replayed = _replay(d, fio.JsonLines(decoded, True))
        if not replayed.clean or replayed.problem is not None:
            return None
        return d

    def _read_state_sync(
        self, sid: str, known: _Durable | None = None, *, keep_fds: bool = False
    ) -> tuple[dict[str, Any], _Durable] | None:
        """Snapshot plus this generation's journal lines; caches the durable state
        (unless ``known``, this process's durable state of the session, matches the
        snapshot's generation: see :meth:`_read_session_sync`). With ``keep_fds``, the
        descriptors read through are kept in ``_reads`` when the journal was clean."""
        kept: dict[str, int] | None = {} if keep_fds else None
        try:
            state = self._read_files_sync(sid, known, kept)
        except BaseException:
            for fd in (kept or {}).values():
                os.close(fd)
            raise
        if kept:
            if state is not None and state[1].journal_bytes < _FORCE_COMPACT:
                fds = fio.SessionFds(state[1].gen, kept.pop(".json"), kept.pop(".journal", None))
                self._reads.keep(sid, fds)
            for fd in kept.values():
                os.close(fd)
        return state

    def _read_file(self, sid: str, suffix: str, kept: dict[str, int] | None) -> bytes | None:
        path = self._path(sid, suffix)
        if kept is None:
            return fio.read_bytes(path)
        old = kept.pop(suffix, None)
        if old is not None:
            os.close(old)
        opened = fio.read_keeping_fd(path)
        if opened is None:
            return None
        kept[suffix] = opened[1]
        return opened[0]

    def _read_files_sync(
        self, sid: str, known: _Durable | None, kept: dict[str, int] | None
    ) -> tuple[dict[str, Any], _Durable] | None:
        start = self._durable.get(sid)
        path = self._path(sid, ".json")
        data = self._read_file(sid, ".json", kept)
        if data is None:
            return None
        d = fio.decode_session(path, data)
        inner = d.get("session_id", sid)
        if inner != sid:
            raise CorruptSession(
                f"{path}: holds session {inner!r}, not {sid!r} (a snapshot must hold the "
                "session its file name says; saving it would write to the other session)"
            )
        gen = d.get("gen", 0)
        if known is not None and known.gen != gen:
            known = None  # replaced since: read it as an unknown session
        journal_path = self._path(sid, ".journal")
        if known is not None and known.journal_bytes == 0:
            journal = b""  # compacted, no checkpoint since: the journal is empty
        else:
            journal = self._read_file(sid, ".journal", kept) or b""
            if kept is not None and os.fstat(kept[".json"]).st_nlink == 0:
                # a compaction replaced the snapshot and emptied the journal between the
                # two reads: the old snapshot without its lines is an older state
                return self._read_files_sync(sid, None, kept)
        replayed = _replay(d, fio.json_lines_checked(journal))
        if replayed.damage is not None:
            self._damaged_journal(journal_path, *replayed.damage)
        if replayed.problem is not None:
            raise CorruptSession(
                f"{journal_path}: its records make a bad session ({replayed.problem})"
            )
        count = d["message_count"]
        if known is not None and replayed.clean:
            return d, known  # what the files say beside the session is known already
        bak = read_backup(self.dir, sid)  # a damaged one goes to quarantine
        row = {k: d.get(k) for k in META_FIELDS}
        row["message_count"] = count
        events_id = replayed.events_id
        durable = _Durable(
            gen=gen,
            count=count,
            row=row,
            bak_count=None if bak is None else len(bak["messages"]),
            # a torn tail (crash mid-append) forces the next save to compact: an append
            # would be glued to the fragment and lost
            journal_bytes=len(journal) if replayed.clean else _FORCE_COMPACT,
            snapshot_bytes=len(data),
            journal_lines=replayed.lines,
            journal_events=replayed.has_events,
            events_id=events_id if isinstance(events_id, str) else None,
        )
        with self._durable_lock:
            # a save that ended meanwhile (in another thread) knows better: keep its state
            if self._durable.get(sid) is start:
                self._durable[sid] = durable
        return d, durable

    def _damaged_journal(self, path: str, line: int, dropped: int, problem: str) -> None:
        """Log a journal damaged in the middle (not a torn tail) and keep a copy of it
        in quarantine: the next save compacts and empties the journal, and the lines
        from the damaged one on cannot be applied in order."""
        fio.quarantine(
            Path(path),
            f"line {line} is damaged ({problem}); it and the {dropped - 1} line(s) after "
            "it are not applied",
            copy=True,
        )

    async def _read_state(self, sid: str) -> tuple[dict[str, Any], _Durable] | None:
        return await self._run(self._read_state_sync, sid)

    async def _stored_info(self, session_id: str) -> StoredInfo | None:
        d = self._durable.get(session_id)
        if d is None:
            state = await self._read_state(session_id)
            if state is None:
                return None
            d = state[1]
        return d.info()

    async def _load(self, session_id: str) -> Session:
        d = self._read_cached(session_id)
        if d is None:
            self._loads_io_thread += 1
            d = await self._run(self._read_session_sync, session_id)
        else:
            self._loads_page_cache += 1
        if d is None:
            raise not_found(session_id)
        self._after_load(session_id)
        return Session.from_dict(d)

    # -- compaction after a load ------------------------------------------------------

    def _after_load(self, sid: str) -> None:
        """Schedule a compaction of ``sid`` in the background when the load just made
        replayed a long journal (``load_compact_ratio``, ``load_compact_records``) and
        no turn holds the session's lease; a few comparisons otherwise."""
        d = self._durable.get(sid)
        ratio = self.load_compact_ratio
        if (
            d is None
            or ratio is None
            or d.journal_lines < self.load_compact_records
            or d.journal_bytes < ratio * d.snapshot_bytes
            or d.journal_bytes >= _FORCE_COMPACT  # a torn tail: the next save compacts
            or self.read_only
            or self._closing
            or sid in self._compactions
            or self._lease_live(sid)
        ):
            return
        loop = asyncio_loop()
        if loop is None:  # trio: no task outlives the caller without a task group
            return
        self._compactions[sid] = loop.create_task(self._compact_after_load(sid, d))

    def _lease_live(self, sid: str) -> bool:
        """Whether a turn holds an unexpired lease on ``sid`` (this process's table)."""
        held = self._held_lease(sid)
        return held is not None and held.expires_in > 0

    async def _compact_after_load(self, sid: str, seen: _Durable) -> None:
        """Compact ``sid`` if its durable state is still ``seen`` (the one the load
        read: no save, delete or other load changed it since) once its save lock is
        taken, and no lease is held; a failure is logged and leaves the journal to the
        next full save."""
        try:
            async with self._session_lock(sid):
                if (
                    self._closing
                    or self._durable.get(sid) is not seen
                    or seen.journal_bytes >= _FORCE_COMPACT  # an append failed meanwhile
                    or self._lease_live(sid)
                ):
                    return
                try:
                    done = await self._run(self._compact_loaded_sync, sid, seen)
                except BaseException:
                    # as after a failed full save: the new snapshot may have landed, so
                    # the next save reads the files again (see _compact)
                    self._durable.pop(sid, None)
                    raise
                if done:
                    self._compactions_after_load += 1
        except Exception as exc:
            logger.warning(
                "session %s: compaction after a load failed (the next full save compacts): %s",
                sid,
                exc,
            )
        finally:
            self._compactions.pop(sid, None)

    def _compact_loaded_sync(self, sid: str, seen: _Durable) -> bool:
        """Rewrite ``sid``'s snapshot with its journal applied, as a full save of the
        session as stored would (next ``gen``: temp file, fsync, rename, directory
        fsync; journal emptied; the journal's events moved to the events file), then
        keep a descriptor of the new snapshot for the next load's page-cache read.
        The session is read again here (from the page cache, under the save lock):
        the object the load returned belongs to the caller, who may change it.
        False when the files no longer match ``seen`` (nothing written). Runs with the
        session's save lock held (see :meth:`_compact_after_load`)."""
        state = self._read_state_sync(sid, seen)
        if state is None or state[1] is not seen:  # changed, damaged: a full save's job
            return False
        session = Session.from_dict(state[0])
        meta = _meta(session)
        row = dict(meta, updated_at=session.updated_at, message_count=session.message_count)
        self._compact_sync(sid, seen, session.messages, meta, row, False, [], False, b"")
        now = self._durable.get(sid)
        fd = fio.open_read(self._path(sid, ".json"))
        if now is not None and fd is not None:
            self._reads.keep(sid, fio.SessionFds(now.gen, fd, None))
        elif fd is not None:
            os.close(fd)
        return True

    async def wait_compactions(self) -> None:
        """Wait until every compaction that loads have scheduled so far has ended
        (each runs in the background: see ``load_compact_ratio``). For tests, and for
        a host that wants the disk settled before it measures or copies the root."""
        while self._compactions:
            await asyncio.gather(*self._compactions.values(), return_exceptions=True)

    async def journal_info(self, session_id: str) -> JournalInfo:
        """What is on disk for ``session_id``: its snapshot's generation and size and
        its journal's size and records of that generation, read from the files now
        (under the session's save lock, so between two saves).

        :raises InvalidSessionId: for a bad id, before any I/O.
        :raises SessionNotFound: if there is no snapshot of that session.
        :raises CorruptSession: if the snapshot cannot be decoded.
        :raises StoreClosed: if the store is not open.
        """
        sid = self._check_id(session_id)
        self._check_open()

        def read() -> JournalInfo | None:
            data = fio.read_bytes(self._path(sid, ".json"))
            if data is None:
                return None
            gen = fio.decode_session(self._path(sid, ".json"), data).get("gen", 0)
            journal = fio.read_bytes(self._path(sid, ".journal")) or b""
            records = sum(
                1
                for rec in fio.json_lines(journal)
                if isinstance(rec, dict) and rec.get("gen") == gen
            )
            return JournalInfo(gen, len(data), len(journal), records)

        async with self._session_lock(sid):
            info = await self._run(read)
        if info is None:
            raise not_found(sid)
        return info

    async def _load_metadata(self, session_id: str) -> Session:
        d = self._durable.get(session_id)
        if d is None:
            state = await self._read_state(session_id)
            if state is None:
                raise not_found(session_id)
            d = state[1]
        return Session.from_dict(dict(d.row), metadata_only=True)

    # -- writing ---------------------------------------------------------------------

    async def _write(
        self,
        session: Session,
        *,
        skip_index: bool,
        backup: bool,
        events: Sequence[Event],
        delta: SaveDelta | None = None,
    ) -> None:
        self._writable()
        sid = session.session_id
        d = self._durable.get(sid)
        untomb = sid in self._tombstones
        if untomb:
            self._tombstones.discard(sid)
        if (
            skip_index
            and d is not None
            and not backup
            and not untomb
            and len(session.messages) >= d.count  # a shrink (discard_backup) rewrites
            and d.journal_bytes < max(self.compact_bytes, d.snapshot_bytes)
        ):
            line, after = self._journal_line(session, d, events, delta)
            await self._run(self._append_sync, sid, line, d, after)
            return
        await self._compact(
            session, d, skip_index=skip_index, backup=backup, events=events, untomb=untomb
        )

    async def _discard_backup(self, session_id: str) -> None:
        await self._run(self._discard_backup_sync, session_id)

    def _discard_backup_sync(self, sid: str) -> None:
        # the name goes durably before the new state is written: a crash between the
        # two leaves the old state without a backup, never the new one with the old
        # backup that recover() would restore over it
        if fio.unlink(self._bak(sid)):
            fio.fsync_dir(self.dir)
        with self._durable_lock:
            d = self._durable.get(sid)
            if d is not None:
                d.bak_count = None

    def _journal_line(
        self, session: Session, d: _Durable, events: Sequence[Event], delta: SaveDelta | None
    ) -> tuple[bytes, _Durable]:
        """Encode a checkpoint record (in the event loop, so the agent cannot change the
        messages under it) and the durable state it leads to.

        The record holds what ``delta`` says changed (already checked against ``d``);
        without one, the last stored message and every field are written again, as
        either may have changed in place."""
        messages = session.messages
        n = len(messages)
        if delta is None:
            base = max(d.count - 1, 0)
            meta: dict[str, Any] | None = _meta(session)
        else:
            base = delta.keep
            meta = {k: getattr(session, k) for k in delta.fields} if delta.fields else None
        rec: dict[str, Any] = {
            "gen": d.gen,
            "base": base,
            "messages": messages[base:],
            "updated_at": session.updated_at,
        }
        if meta is not None:
            rec["meta"] = meta
        if events:
            # not Event.json(): its cache would pin orjson's buffer on every retained event
            records = rec["events"] = event_records(events)
            rec["stream_id"] = records[0]["stream_id"]
        line = orjson.dumps(rec) + b"\n"
        row = dict(d.row)
        if meta is not None:
            row.update(meta)
        row["updated_at"] = session.updated_at
        row["message_count"] = n
        after = _Durable(
            gen=d.gen,
            count=n,
            row=row,
            bak_count=d.bak_count,
            journal_bytes=d.journal_bytes + len(line),
            snapshot_bytes=d.snapshot_bytes,
            journal_lines=d.journal_lines + 1,
            journal_events=d.journal_events or bool(events),
            events_id=d.events_id,
        )
        return line, after

    def _append_sync(self, sid: str, line: bytes, before: _Durable, after: _Durable) -> None:
        try:
            self._fds.append_durable(sid, self._path(sid, ".journal"), line)
        except BaseException:
            # part of the line may be on disk: an append glued to it would be lost, so
            # the next save compacts (rewrites the snapshot, empties the journal)
            before.journal_bytes = _FORCE_COMPACT
            raise
        if after.bak_count is not None and after.count >= after.bak_count:
            fio.unlink(self._bak(sid))  # superseded: recovery would never restore it
            after.bak_count = None
        with self._durable_lock:
            self._durable[sid] = after

    async def _compact(
        self,
        session: Session,
        d: _Durable | None,
        *,
        skip_index: bool,
        backup: bool,
        events: Sequence[Event],
        untomb: bool,
    ) -> None:
        messages = list(session.messages)  # the list may grow while the thread encodes
        meta = _meta(session)
        row = dict(meta, updated_at=session.updated_at, message_count=len(messages))
        event_dicts = event_records(events)  # not Event.json(): see _journal_line
        # a session's first save is indexed even as a checkpoint: else it would be
        # missing from list_sessions() until its next full save or a restart
        index = not skip_index or d is None
        index_line = self._index.put(row) if index else b""
        try:
            await self._run(
                self._compact_sync,
                session.session_id,
                d,
                messages,
                meta,
                row,
                backup,
                event_dicts,
                untomb,
                index_line,
            )
        except BaseException:
            # the new snapshot may have landed before the step that failed (emptying the
            # journal, the directory fsync): the next save reads the files again rather
            # than append under the old generation, whose lines that snapshot ignores
            self._durable.pop(session.session_id, None)
            raise

    def _compact_sync(
        self,
        sid: str,
        d: _Durable | None,
        messages: list[dict[str, Any]],
        meta: dict[str, Any],
        row: dict[str, Any],
        backup: bool,
        events: list[dict[str, Any]],
        untomb: bool,
        index_line: bytes,
    ) -> None:
        self._fds.discard(sid)  # the journal is emptied below: no descriptor outlives that
        self._reads.discard(sid)  # the snapshot is replaced: do not pin the old one
        if untomb:
            fio.append_durable(
                self.dir / "_deleted.jsonl",
                orjson.dumps({"session_id": sid, "undeleted": True}) + b"\n",
                created=False,
            )
        bak_count = None if d is None else d.bak_count
        if backup:
            current = self._read_state_sync(sid)
            if current is not None:
                fio.atomic_write(self._bak(sid), orjson.dumps(current[0]), sync_dir=False)
                bak_count = current[1].count
        events_id = None if d is None else d.events_id
        if events or (d is not None and d.journal_events):
            events_id = self._write_events_sync(sid, d, events) or events_id
        gen = (0 if d is None else d.gen) + 1
        body = dict(
            meta,
            updated_at=row["updated_at"],
            message_count=len(messages),
            format=1,
            gen=gen,
            events_id=events_id,
            messages=messages,
        )
        data = orjson.dumps(body)
        fio.atomic_write(self._snap(sid), data, sync_dir=False)
        fio.truncate_durable(self._journal(sid))
        fio.fsync_dir(self.dir)
        if bak_count is not None and not backup and len(messages) >= bak_count:
            fio.unlink(self._bak(sid))
            bak_count = None
        with self._durable_lock:
            self._durable[sid] = _Durable(
                gen=gen,
                count=len(messages),
                row=row,
                bak_count=bak_count,
                journal_bytes=0,
                snapshot_bytes=len(data),
                journal_lines=0,
                journal_events=False,
                events_id=events_id,
            )
        if index_line:
            self._index.append(index_line)

    # -- events ----------------------------------------------------------------------

    def _read_events_sync(
        self, sid: str, d: _Durable | None
    ) -> tuple[str | None, list[dict[str, Any]]]:
        """The stream id and event records held durably: the events file, then the
        journal lines of the snapshot's generation (``d``; ``None``: the file alone).
        Files written before runs existed hold one event a line, which is a record."""
        stream_id: str | None = None
        events: list[dict[str, Any]] = []
        recs = fio.json_lines(fio.read_bytes(self._events(sid)) or b"")
        if recs and isinstance(recs[0], dict) and "stream_id" in recs[0]:
            head = recs[0]
            stream_id = head["stream_id"]
            events = [e for e in recs[1:] if isinstance(e, dict)]
            if d is not None and "id" in head and head["id"] != d.events_id:
                # written by a full save whose snapshot never landed (a crash between the
                # two renames): only the records durable before that save count
                events = events[: head.get("base", 0)]
        if d is not None:
            last = record_last_seq(events[-1]) if events else 0
            for rec in fio.json_lines(fio.read_bytes(self._journal(sid)) or b""):
                if not isinstance(rec, dict) or rec.get("gen") != d.gen or not rec.get("events"):
                    continue
                if rec.get("stream_id") != stream_id:
                    stream_id, events, last = rec["stream_id"], [], 0
                new = records_after(rec["events"], last)
                events.extend(new)
                last = record_last_seq(new[-1]) if new else last
        return stream_id, events

    def _write_events_sync(
        self, sid: str, d: _Durable | None, new: list[dict[str, Any]]
    ) -> str | None:
        """Rewrite the events file with the records ``new`` added (records are never
        merged, so the first ``base`` lines are exactly the ones durable before); returns
        its id for the snapshot (``None``: nothing to write)."""
        stream_id, events = self._read_events_sync(sid, d)
        base = len(events)
        if new:
            if new[0]["stream_id"] != stream_id:
                stream_id, events, base = new[0]["stream_id"], [], 0
            last = record_last_seq(events[-1]) if events else 0
            events.extend(records_after(new, last))
        if stream_id is None:
            return None
        # the file lands before its snapshot, which names it by ``id``: a reader whose
        # snapshot names another keeps only the first ``base`` events (the ones durable
        # before this save; see _read_events_sync)
        events_id = os.urandom(8).hex()
        head = {"stream_id": stream_id, "id": events_id, "base": base}
        lines = [orjson.dumps(head)] + [orjson.dumps(e) for e in events]
        fio.atomic_write(self._events(sid), b"\n".join(lines) + b"\n", sync_dir=False)
        return events_id

    async def _load_events(self, session_id: str, stream_id: str, after_seq: int) -> list[Event]:
        def read() -> list[Event]:
            durable = self._durable.get(session_id)
            if durable is None:  # not read by this process yet
                state = self._read_state_sync(session_id)
                durable = None if state is None else state[1]
            if durable is None:  # no snapshot: an events file without one never counted
                return []
            sid_stream, events = self._read_events_sync(session_id, durable)
            if sid_stream != stream_id:
                return []
            return events_from_records(events, after_seq)

        # Under the session's save lock: a full save replaces the events file, then
        # empties the journal; a read of the old file and the emptied journal (the save
        # running in another thread between the two reads) would miss the journal's events.
        async with self._session_lock(session_id):
            return await self._run(read)

    # -- the tool ledger: <id>.ledger.jsonl (see _file_ledger) ------------------------

    def _ledger_sync(self, sid: str) -> Ledger:
        """The folded ledger file, cached (not when read-only: the owner writes it)."""
        ledger = self._ledgers.get(sid)
        if ledger is None:
            ledger = read_ledger(self._ledger(sid), sid, quarantine=not self.read_only)
            if not self.read_only:
                self._ledgers[sid] = ledger
        return ledger

    async def _ledger_get(
        self, session_id: str, stream_id: str, call_id: str
    ) -> ToolCallRecord | None:
        ledger = self._ledgers.get(session_id)  # cached: no hop to the I/O thread
        if ledger is None:
            ledger = await self._run(self._ledger_sync, session_id)
        record = ledger.records.get((stream_id, call_id))
        return None if record is None else record.copy()  # the cache shares nothing

    async def _ledger_put(self, record: ToolCallRecord) -> None:
        await self._run(self._ledger_put_sync, record.copy(), encode_record(record))

    def _ledger_put_sync(self, record: ToolCallRecord, line: bytes) -> None:
        sid = record.session_id
        ledger = self._ledger_sync(sid)
        path = self._ledger(sid)
        try:
            if ledger.needs_rewrite(record, self.ledger_streams):
                # a torn tail or damaged line to drop, or streams to prune
                self._fds.discard(_ledger_key(sid))
                ledger = ledger.rewritten(record, self.ledger_streams)
                fio.atomic_write(path, ledger.encode())
                self._ledgers[sid] = ledger
            elif not ledger.exists:
                fio.append_durable(path, line, created=False)  # fsyncs the new name too
                ledger.exists = True
                ledger.add(record)
            else:
                self._fds.append_durable(_ledger_key(sid), path, line)
                ledger.add(record)
        except BaseException:
            # part of the line may be on disk: read the file again before the next write
            self._ledgers.pop(sid, None)
            raise

    async def _tool_calls(self, session_id: str, stream_id: str) -> list[ToolCallRecord]:
        ledger = self._ledgers.get(session_id)
        if ledger is None:
            ledger = await self._run(self._ledger_sync, session_id)
        return [r.copy() for (stream, _), r in ledger.records.items() if stream == stream_id]

    # -- delete, list, recover -------------------------------------------------------

    async def _delete(self, session_id: str) -> None:
        self._writable()
        line = self._index.remove(session_id)
        self._tombstones.add(session_id)
        self._durable.pop(session_id, None)
        self._ledgers.pop(session_id, None)

        def delete() -> None:
            self._fds.discard(session_id)  # before its journal is unlinked
            self._reads.discard(session_id)
            self._fds.discard(_ledger_key(session_id))
            fio.append_durable(
                self.dir / "_deleted.jsonl",
                orjson.dumps({"session_id": session_id}) + b"\n",
                created=False,
            )
            for path in (
                self._bak(session_id),
                self._journal(session_id),
                self._events(session_id),
                self._ledger(session_id),
                self._snap(session_id),
            ):
                fio.unlink(path)
            fio.fsync_dir(self.dir)
            self._index.append(line)

        await self._run(delete)

    async def _list_page(self, limit: int, after: tuple[float, str] | None) -> list[Session]:
        return [
            Session.from_dict(row, metadata_only=True) for row in self._index.page(limit, after)
        ]

    async def _has_more(self, last: Session) -> bool:
        return self._index.has_visible_after(last.updated_at, last.session_id)

    async def _recover(self) -> RecoveryReport:
        self._writable()

        def run() -> RecoveryReport:
            self._fds.clear()  # recovery may replace journals
            self._reads.clear()  # and snapshots
            self._ledgers.clear()  # and remove ledgers (of deleted sessions)
            report, changed = recover_directory(
                self.dir, self._tombstones, self._index.ids(), self._count_and_gen
            )
            if changed:
                self._durable = {sid: d for sid, d in self._durable.items() if sid not in changed}
                rows = self._index.all_rows()
                for sid in changed:
                    try:
                        state = self._read_state_sync(sid)
                    except CorruptSession as exc:
                        self._quarantine_session_sync(sid, str(exc))
                        report["quarantined"] += 1
                        report["scanned"] -= 1
                        state = None
                    except OSError as exc:
                        logger.error("recover: cannot read session %s: %s", sid, os_error(exc))
                        state = None
                    if state is None:
                        rows.pop(sid, None)
                    else:
                        rows[sid] = state[1].row
                self._index.replace_all(rows)
            return report

        return await self._run(run)

    def _quarantine_session_sync(self, sid: str, reason: str) -> None:
        """Move a session whose snapshot cannot be read (and its journal and events,
        which mean nothing without it) to quarantine; nothing else is touched."""
        self._fds.discard(sid)
        self._fds.discard(_ledger_key(sid))
        self._reads.discard(sid)
        for suffix in (".json", ".journal", ".events.jsonl", ".ledger.jsonl"):
            fio.quarantine(Path(self._path(sid, suffix)), reason)
        self._durable.pop(sid, None)
        self._ledgers.pop(sid, None)

    def _count_and_gen(self, sid: str) -> tuple[int, int] | None:
        state = self._read_state_sync(sid)
        return None if state is None else (state[1].count, state[1].gen)

    # -- documents: files at the store root (e.g. routes.json) ------------------------

    async def _read_document(self, name: str) -> tuple[bytes, int] | None:
        cached = self._documents.get(name)
        if cached is not None:
            return cached
        path = self.root / name

        def read() -> bytes | None:
            try:
                return path.read_bytes()
            except FileNotFoundError:
                return None
            except OSError as exc:
                raise StoreError(f"cannot read {str(path)!r}: {exc}") from exc

        data = await self._io.run(read)
        if data is None:
            return None
        self._documents[name] = (data, 1)  # one process owns the root: versions are ours
        return self._documents[name]

    async def _store_document(self, name: str, data: bytes, version: int) -> None:
        path = self.root / name

        def write() -> None:
            try:
                fio.atomic_write(path, data, mode=0o600)
            except OSError as exc:
                raise StoreError(f"cannot write {str(path)!r}: {exc}") from exc

        await self._io.run(write)
        self._documents[name] = (data, version)

    def statistics(self) -> dict[str, int]:
        """``{sessions_indexed, sessions_cached, tombstones, loads_page_cache,
        loads_io_thread, compactions_after_load}``: an immutable snapshot.
        ``compactions_after_load`` counts the compactions loads scheduled that ran to
        the end (see ``load_compact_ratio``). ``loads_page_cache`` counts the
        ``load()`` calls read from the page cache on the calling thread (descriptors an
        earlier load kept, ``preadv2`` with ``RWF_NOWAIT``), ``loads_io_thread`` those
        read in the I/O thread (the first of a session, after a compaction, when a page
        was not cached, on a read-only store, or where ``RWF_NOWAIT`` is missing)."""
        return {
            "sessions_indexed": len(self._index),
            "sessions_cached": len(self._durable),
            "tombstones": len(self._tombstones),
            "loads_page_cache": self._loads_page_cache,
            "loads_io_thread": self._loads_io_thread,
            "compactions_after_load": self._compactions_after_load,
        }


def _positive_int(value: object, name: str) -> int:
    """``value`` if it is an integer >= 1 (not a bool), else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"invalid {name} {value!r}: must be an integer >= 1")
    return value


def _ledger_key(sid: str) -> str:
    """The key of a ledger's descriptor in the store's AppendFds (session ids hold no
    ``.``, so it never names a journal)."""
    return f"{sid}.ledger"
