"""FileStore's session index: derived data, rebuilt from the session files when it is
missing or damaged.

On disk, ``_index.jsonl`` is a compacted snapshot followed by a log:

* an optional header line ``{"index_format": 1, "ids": [...], "updated_at": [...],
  "lengths": [...]}``: the snapshot's sessions in list order (newest first) and the
  byte length of each one's row line, which follow the header in that order;
* then one JSON line per indexed save since the snapshot (the last line for an id
  wins; ``{"session_id": id, "deleted": true}`` removes it).

Opening reads the header and the log and keeps the snapshot's rows as bytes: a row is
parsed the first time it is read (a page of the listing), so ``open()`` costs the
header (a few columns, turned into keys by C loops) plus the log, not a parse of every
row. In memory: the sort keys kept in order, ``(-updated_at, id, position)`` with the
row's position in the snapshot (-1 for a row saved since), the rows saved since by id,
and the snapshot rows parsed so far by position; a page is a binary search and a slice
(O(log S + page)). The id -> position map a save needs is built at the first save.

Compaction merges the log into a new snapshot (temp file, fsync, rename) once the log
holds more than ``1024 + rows / 8`` lines. It reads the file itself, not memory, and
runs under the same lock as every append, so an append racing it lands in the file
before the merge (and is merged) or after the rename (in the new log), never in a file
about to be replaced.
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
from itertools import accumulate
from operator import neg
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from .._exceptions import StoreError
from ._fileio import append_durable, atomic_write, json_lines, read_bytes
from .abc import sort_key, visible_in_list

__all__ = ["SessionIndex"]

logger = logging.getLogger("runtime.stores.files")

Row = dict[str, Any]

_HEADER = b'{"index_format":'
#: The log is merged into the snapshot once it holds more than this many lines plus
#: an eighth of the snapshot's rows (bounds what ``open()`` parses).
_COMPACT_LINES = 1024


def _visible(row: Row) -> bool:
    return visible_in_list(
        row.get("title", "Untitled"),
        row.get("message_count", 0),
        row.get("active_stream_id"),
        row.get("pending_user_message"),
    )


class _Parsed(NamedTuple):
    """``_index.jsonl`` decoded: snapshot columns (in list order), each row line's
    start offset (plus the end of the last), and the log records after them."""

    data: bytes
    ids: list[str]
    updated: list[float]
    offsets: list[int]
    log: list[Row]


def _columns(head: Any) -> tuple[list[str], list[float], list[int]] | None:
    if not isinstance(head, dict):
        return None
    ids, updated, lengths = head.get("ids"), head.get("updated_at"), head.get("lengths")
    if not (isinstance(ids, list) and isinstance(updated, list) and isinstance(lengths, list)):
        return None
    if not len(ids) == len(updated) == len(lengths):
        return None
    # one pass in C per column (a set of the element types)
    if set(map(type, ids)) - {str} or set(map(type, lengths)) - {int}:
        return None
    if set(map(type, updated)) - {float, int}:
        return None
    return ids, updated, lengths


def _parse(data: bytes) -> _Parsed | None:
    """Decode the file; ``None`` if it is damaged (the caller rebuilds it)."""
    ids: list[str] = []
    updated: list[float] = []
    offsets = [0]
    start = 0
    if data.startswith(_HEADER):
        end = data.find(b"\n")
        if end < 0:
            return None
        try:
            cols = _columns(orjson.loads(data[:end]))
        except orjson.JSONDecodeError:
            return None
        if cols is None:
            return None
        ids, updated, lengths = cols
        offsets = list(accumulate(lengths, initial=end + 1))
        start = offsets[-1]
        if start > len(data) or data[start - 1 : start] != b"\n":
            return None
    tail = data[start:]
    records = json_lines(tail)
    if tail and tail.count(b"\n") > len(records) + 1:
        return None  # a corrupt line in the middle
    for rec in records:
        if not isinstance(rec, dict) or not isinstance(rec.get("session_id"), str):
            return None
        u = rec.get("updated_at", 0.0)
        if type(u) is not float and type(u) is not int:
            return None  # e.g. a string updated_at: it could not be sorted
    return _Parsed(data, ids, updated, offsets, records)


def _snapshot(entries: list[tuple[float, str, bytes]]) -> bytes:
    """The file for ``entries`` (``(updated_at, id, row line)``), sorted here."""
    entries.sort(key=lambda e: sort_key(e[0], e[1]))
    head = {
        "index_format": 1,
        "ids": [e[1] for e in entries],
        "updated_at": [e[0] for e in entries],
        "lengths": [len(e[2]) for e in entries],
    }
    return b"".join([orjson.dumps(head), b"\n", *(e[2] for e in entries)])


def _line(row: Row) -> bytes:
    return orjson.dumps(row) + b"\n"


Key = tuple[float, str, int]  # (-updated_at, id, position in the snapshot or -1)


def _key(row: Row, sid: str) -> Key:
    return (-row.get("updated_at", 0.0), sid, -1)


class SessionIndex:
    """Rows of metadata (``Session.meta_dict()`` form) for every stored session.

    The event loop reads and updates memory (:meth:`get`, :meth:`put`, :meth:`remove`,
    :meth:`page`); the blocking file work (:meth:`load`, :meth:`append`,
    :meth:`replace_all`, :meth:`compact`) runs on the store's I/O threads.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._rows: dict[str, Row] = {}  # rows saved (or logged) since the snapshot
        self._gone: set[str] = set()  # snapshot ids saved or deleted since
        self._ids: list[str] = []  # the snapshot's columns
        self._updated: list[float] = []
        self._offsets: list[int] = [0]
        self._snap = memoryview(b"")
        self._parsed: dict[int, Row] = {}  # snapshot rows parsed so far, by position
        self._pos: dict[str, int] | None = None  # id -> snapshot position, when needed
        self._keys: list[Key] = []
        self._file_lock = threading.Lock()  # appends vs compaction
        self._lines = 0  # log lines after the snapshot (under _file_lock)
        self._snap_rows = 0

    # -- loading ---------------------------------------------------------------------

    def load(self) -> bool:
        """Read the file (blocking). Returns ``False`` if it is missing or unusable,
        in which case the caller rebuilds it from the session files."""
        data = read_bytes(self.path)
        if data is None:
            return False
        parsed = _parse(data)
        if parsed is None:
            return False
        ids, updated = parsed.ids, parsed.updated
        self._reset(ids, updated, parsed.offsets, memoryview(parsed.data))
        keys = list(zip(map(neg, updated), ids, range(len(ids)), strict=True))
        if parsed.log:
            for rec in parsed.log:
                sid = rec["session_id"]
                self._gone.add(sid)
                if rec.get("deleted"):
                    self._rows.pop(sid, None)
                else:
                    self._rows[sid] = rec
            keys = [k for k in keys if k[1] not in self._gone]
            keys += [_key(r, sid) for sid, r in self._rows.items()]
            keys.sort()
        self._keys = keys
        with self._file_lock:
            self._lines = len(parsed.log)
            self._snap_rows = len(ids)
        return True

    def _reset(
        self, ids: list[str], updated: list[float], offsets: list[int], snap: memoryview
    ) -> None:
        self._rows, self._gone, self._parsed, self._pos = {}, set(), {}, None
        self._ids, self._updated, self._offsets, self._snap = ids, updated, offsets, snap

    def _set(self, rows: dict[str, Row]) -> None:
        """Every row, in memory only (parsed, no snapshot behind them)."""
        self._reset([], [], [0], memoryview(b""))
        self._rows = rows
        self._keys = sorted(_key(r, sid) for sid, r in rows.items())

    def replace_all(self, rows: dict[str, Row]) -> None:
        """Set every row and rewrite the file as a snapshot of them (blocking, atomic)."""
        self._set(rows)
        data = _snapshot([(r.get("updated_at", 0.0), sid, _line(r)) for sid, r in rows.items()])
        with self._file_lock:
            atomic_write(self.path, data)
            self._lines = 0
            self._snap_rows = len(rows)

    def compact(self) -> None:
        """Merge the file's log into its snapshot (blocking, atomic)."""
        with self._file_lock:
            self._compact_locked()

    def _compact_locked(self) -> None:
        parsed = _parse(read_bytes(self.path) or b"")
        if parsed is None:
            # damaged on disk: the next open rebuilds it from the sessions; until then
            # try again only after as many lines again, not at every append
            logger.warning("session index %s is damaged: not compacted", self.path)
            self._lines = 0
            return
        changed: dict[str, Row | None] = {}
        for rec in parsed.log:
            changed[rec["session_id"]] = None if rec.get("deleted") else rec
        data, offsets = parsed.data, parsed.offsets
        entries = [
            (u, sid, data[offsets[i] : offsets[i + 1]])
            for i, (u, sid) in enumerate(zip(parsed.updated, parsed.ids, strict=True))
            if sid not in changed
        ]
        entries += [
            (r.get("updated_at", 0.0), sid, _line(r)) for sid, r in changed.items() if r is not None
        ]
        atomic_write(self.path, _snapshot(entries))
        self._lines = 0
        self._snap_rows = len(entries)

    # -- rows ------------------------------------------------------------------------

    def _snapshot_row(self, pos: int) -> Row:
        """The snapshot's row at ``pos``, parsed at its first read.

        :raises StoreError: if it cannot be decoded.
        """
        row = self._parsed.get(pos)
        if row is None:
            sid = self._ids[pos]
            try:
                row = orjson.loads(self._snap[self._offsets[pos] : self._offsets[pos + 1]])
            except orjson.JSONDecodeError as exc:
                raise StoreError(
                    f"{self.path}: the row of session {sid!r} is damaged ({exc}); delete the "
                    "file to have it rebuilt at the next open"
                ) from exc
            if not isinstance(row, dict):
                raise StoreError(f"{self.path}: the row of session {sid!r} is not an object")
            self._parsed[pos] = row
        return row

    def _position(self, sid: str) -> int | None:
        """The snapshot position of a row not saved or deleted since, else None."""
        if sid in self._gone:
            return None
        if self._pos is None:
            self._pos = dict(zip(self._ids, range(len(self._ids)), strict=True))
        return self._pos.get(sid)

    def get(self, sid: str) -> Row | None:
        """The row of ``sid``, or None.

        :raises StoreError: as :meth:`_snapshot_row`.
        """
        row = self._rows.get(sid)
        if row is not None:
            return row
        pos = self._position(sid)
        return None if pos is None else self._snapshot_row(pos)

    # -- updates (memory in the event loop; the returned line is written by append) --

    def _unkey(self, sid: str) -> None:
        row = self._rows.get(sid)
        if row is not None:
            key = _key(row, sid)
        else:
            pos = self._position(sid)
            if pos is None:
                return
            key = (-self._updated[pos], sid, pos)
            self._gone.add(sid)
        i = bisect.bisect_left(self._keys, key)
        if i < len(self._keys) and self._keys[i] == key:
            del self._keys[i]

    def put(self, row: Row) -> bytes:
        """Record a row in memory; returns the line for :meth:`append`."""
        sid = row["session_id"]
        self._unkey(sid)
        self._rows[sid] = row
        bisect.insort(self._keys, _key(row, sid))
        return _line(row)

    def remove(self, sid: str) -> bytes:
        """Forget a row in memory; returns the line for :meth:`append`."""
        self._unkey(sid)
        self._rows.pop(sid, None)
        return _line({"session_id": sid, "deleted": True})

    def append(self, lines: bytes) -> None:
        """Blocking: append ``lines`` durably; merge the log into the snapshot once it
        is long (see the module docstring)."""
        with self._file_lock:
            append_durable(self.path, lines, created=self.path.exists())
            self._lines += lines.count(b"\n")
            if self._lines > _COMPACT_LINES + self._snap_rows // 8:
                self._compact_locked()

    # -- reading -----------------------------------------------------------------------

    def page(self, limit: int, after: tuple[float, str] | None) -> list[Row]:
        """Up to ``limit`` visible rows sorting after the cursor key ``after``."""
        keys = self._keys
        start = 0
        if after is not None:
            start = bisect.bisect_right(keys, (*sort_key(*after), math.inf))
        out: list[Row] = []
        for i in range(start, len(keys)):
            _, sid, pos = keys[i]
            row = self._rows[sid] if pos < 0 else self._snapshot_row(pos)
            if _visible(row):
                out.append(row)
                if len(out) == limit:
                    break
        return out

    def has_visible_after(self, updated_at: float, sid: str) -> bool:
        """True if a visible row sorts after ``(updated_at, sid)``."""
        return bool(self.page(1, (updated_at, sid)))

    def ids(self) -> set[str]:
        """The ids of every indexed session."""
        return {k[1] for k in self._keys}

    def all_rows(self) -> dict[str, Row]:
        """Every row, parsed (a new mapping).

        :raises StoreError: as :meth:`get`.
        """
        return {
            sid: self._rows[sid] if pos < 0 else self._snapshot_row(pos)
            for _, sid, pos in self._keys
        }

    def __contains__(self, sid: object) -> bool:
        return isinstance(sid, str) and self.get(sid) is not None

    def __len__(self) -> int:
        return len(self._keys)
