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
header (a few columns) plus the log, not a parse of every row. In memory: the parsed
rows by id, the snapshot rows not parsed yet, and the sort keys kept in order, so a
page is a binary search and a slice (O(log S + page)).

Compaction merges the log into a new snapshot (temp file, fsync, rename) once the log
holds more than ``1024 + rows / 8`` lines. It reads the file itself, not memory, and
runs under the same lock as every append, so an append racing it lands in the file
before the merge (and is merged) or after the rename (in the new log), never in a file
about to be replaced.
"""

from __future__ import annotations

import bisect
import threading
from itertools import accumulate
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from .._exceptions import StoreError
from ._fileio import append_durable, atomic_write, json_lines, read_bytes
from .abc import sort_key, visible_in_list

__all__ = ["SessionIndex"]

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
    if not all(type(s) is str for s in ids) or not all(type(n) is int for n in lengths):
        return None
    if not all(type(u) is float or type(u) is int for u in updated):
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


class SessionIndex:
    """Rows of metadata (``Session.meta_dict()`` form) for every stored session.

    The event loop reads and updates memory (:meth:`get`, :meth:`put`, :meth:`remove`,
    :meth:`page`); the blocking file work (:meth:`load`, :meth:`append`,
    :meth:`replace_all`, :meth:`compact`) runs on the store's I/O threads.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._rows: dict[str, Row] = {}  # parsed rows
        self._pos: dict[str, int] = {}  # snapshot rows not parsed yet: id -> position
        self._snap = memoryview(b"")
        self._offsets: list[int] = [0]
        self._updated: list[float] = []
        self._keys: list[tuple[float, str]] = []
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
        self._snap = memoryview(parsed.data)
        self._offsets = parsed.offsets
        self._updated = updated
        self._pos = dict(zip(ids, range(len(ids)), strict=True))
        self._rows = {}
        keys = [(-u, sid) for u, sid in zip(updated, ids, strict=True)]
        if parsed.log:
            for rec in parsed.log:
                sid = rec["session_id"]
                self._pos.pop(sid, None)
                if rec.get("deleted"):
                    self._rows.pop(sid, None)
                else:
                    self._rows[sid] = rec
            touched = {rec["session_id"] for rec in parsed.log}
            keys = [k for k in keys if k[1] not in touched]
            keys += [sort_key(r.get("updated_at", 0.0), sid) for sid, r in self._rows.items()]
            keys.sort()
        self._keys = keys
        with self._file_lock:
            self._lines = len(parsed.log)
            self._snap_rows = len(ids)
        return True

    def _set(self, rows: dict[str, Row]) -> None:
        """Every row, in memory only (parsed, no snapshot behind them)."""
        self._rows = rows
        self._pos = {}
        self._snap = memoryview(b"")
        self._offsets = [0]
        self._updated = []
        self._keys = sorted(sort_key(r.get("updated_at", 0.0), sid) for sid, r in rows.items())

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
            return  # damaged on disk: the next open rebuilds it from the sessions
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

    # -- updates (memory in the event loop; the returned line is written by append) --

    def get(self, sid: str) -> Row | None:
        """The row of ``sid`` (parsed from the snapshot at its first read), or None.

        :raises StoreError: if the snapshot's row cannot be decoded.
        """
        row = self._rows.get(sid)
        if row is not None:
            return row
        i = self._pos.get(sid)
        if i is None:
            return None
        try:
            row = orjson.loads(self._snap[self._offsets[i] : self._offsets[i + 1]])
        except orjson.JSONDecodeError as exc:
            raise StoreError(
                f"{self.path}: the row of session {sid!r} is damaged ({exc}); delete the "
                "file to have it rebuilt at the next open"
            ) from exc
        if not isinstance(row, dict):
            raise StoreError(f"{self.path}: the row of session {sid!r} is not an object")
        del self._pos[sid]
        self._rows[sid] = row
        return row

    def _key(self, sid: str) -> tuple[float, str] | None:
        row = self._rows.get(sid)
        if row is not None:
            return sort_key(row.get("updated_at", 0.0), sid)
        i = self._pos.get(sid)
        return None if i is None else (-self._updated[i], sid)

    def _unkey(self, sid: str) -> None:
        key = self._key(sid)
        if key is not None:
            i = bisect.bisect_left(self._keys, key)
            if i < len(self._keys) and self._keys[i] == key:
                del self._keys[i]

    def put(self, row: Row) -> bytes:
        """Record a row in memory; returns the line for :meth:`append`."""
        sid = row["session_id"]
        self._unkey(sid)
        self._pos.pop(sid, None)
        self._rows[sid] = row
        bisect.insort(self._keys, sort_key(row.get("updated_at", 0.0), sid))
        return _line(row)

    def remove(self, sid: str) -> bytes:
        """Forget a row in memory; returns the line for :meth:`append`."""
        self._unkey(sid)
        self._rows.pop(sid, None)
        self._pos.pop(sid, None)
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
        start = 0 if after is None else bisect.bisect_right(keys, sort_key(*after))
        out: list[Row] = []
        for i in range(start, len(keys)):
            row = self.get(keys[i][1])
            if row is not None and _visible(row):
                out.append(row)
                if len(out) == limit:
                    break
        return out

    def has_visible_after(self, updated_at: float, sid: str) -> bool:
        """True if a visible row sorts after ``(updated_at, sid)``."""
        return bool(self.page(1, (updated_at, sid)))

    def ids(self) -> set[str]:
        """The ids of every indexed session."""
        return self._rows.keys() | self._pos.keys()

    def all_rows(self) -> dict[str, Row]:
        """Every row, parsed (a copy of the mapping).

        :raises StoreError: as :meth:`get`.
        """
        for sid in list(self._pos):
            self.get(sid)
        return dict(self._rows)

    def __contains__(self, sid: object) -> bool:
        return sid in self._rows or sid in self._pos

    def __len__(self) -> int:
        return len(self._rows) + len(self._pos)
