"""FileStore's session index: derived data, rebuilt from the session files when it is
missing or damaged.

On disk, ``_index.jsonl`` is a compacted snapshot followed by a log:

* a snapshot (optional): a JSON header line ``{"index_format": 2, "rows": N,
  "ids_bytes": B, "byteorder": "little", "crc32": C}``, then the snapshot's columns in
  binary, in list order (newest first): the N session ids, each followed by ``\\n``
  (B bytes of UTF-8), N + 1 offsets of the ids in them, N ``-updated_at`` values
  (doubles, so ascending), N + 1 offsets of the row lines (from the first row's start; offsets are
  unsigned 64-bit), C being the CRC-32 of these four; then the N row lines themselves
  (one JSON object each) in the same order;
* then one JSON line per indexed save since the snapshot (the last line for an id
  wins; ``{"session_id": id, "deleted": true}`` removes it).

Opening reads the file once and copies the columns into arrays (``array.frombytes``:
no parse of a value per session, no object per session; an id is decoded when read,
all of them at the first save); nothing else it does grows with the snapshot. Rows
stay bytes until read (a page of the listing parses its rows the first time); only
the log is parsed, and compaction bounds it (below). In memory:
the snapshot's columns, which are already sorted; the rows saved since by id, with
their sort keys ``(-updated_at, id)`` in a sorted list; the snapshot ids saved or
deleted since (skipped when read). A page is a binary search in each and a merge of
the two (O(log S + page)). The id -> position map a save needs is built at the first
save.

The snapshot had an all-JSON header before (format 1: ``{"index_format": 1, "ids":
[...], "updated_at": [...], "lengths": [...]}`` followed by the rows), and before
that there was no snapshot (only the log): both still open, and the next compaction
writes format 2.

Compaction merges the log into a new snapshot (temp file, fsync, rename) once the log
holds more than ``1024 + rows / 8`` lines, and when a writable store closes with more
than 1024 (so an open after a clean close parses at most that many; after a crash, at
most the former). It reads the file itself, not memory, and
runs under the same lock as every append, so an append racing it lands in the file
before the merge (and is merged) or after the rename (in the new log), never in a file
about to be replaced.
"""

from __future__ import annotations

import bisect
import logging
import sys
import threading
import zlib
from array import array
from collections.abc import Iterator
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
_FORMAT = 2
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


class _SnapIds:
    """The snapshot's ids, decoded one at a time (a page reads a few) or all at once
    (the first save builds an id -> position map from them)."""

    __slots__ = ("_blob", "_list", "_starts")

    def __init__(self, blob: bytes, starts: array[int], ids: list[str] | None = None) -> None:
        self._blob = blob  # the ids, each followed by b"\n"
        self._starts = starts  # N + 1: where each id starts (the last: the blob's end)
        self._list = ids

    @classmethod
    def of(cls, ids: list[str]) -> _SnapIds:
        return cls(b"", array("Q", [0] * (len(ids) + 1)), ids)

    def __len__(self) -> int:
        return len(self._starts) - 1

    def __getitem__(self, pos: int) -> str:
        if self._list is not None:
            return self._list[pos]
        return self._blob[self._starts[pos] : self._starts[pos + 1] - 1].decode()

    def list(self) -> list[str]:
        """Every id, in list order (decoded and split once, then kept)."""
        if self._list is None:
            self._list = self._blob[:-1].decode().split("\n") if self._blob else []
        return self._list


class _Parsed(NamedTuple):
    """``_index.jsonl`` decoded: the snapshot's columns (in list order), its rows'
    bytes and their offsets in them (N + 1), and the log records after them."""

    ids: _SnapIds
    negated: array[float]  # -updated_at: ascending in list order
    offsets: array[int]
    rows: memoryview
    log: list[Row]


def _columns_v1(head: dict[str, Any]) -> tuple[list[str], list[float], list[int]] | None:
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


_Snap = tuple[_SnapIds, "array[float]", "array[int]", int]  # ids, updated, offsets, rows end


def _snapshot_v1(data: bytes, start: int, head: dict[str, Any]) -> _Snap | None:
    """Format 1: ``(ids, updated_at, offsets, end of the rows)``, or ``None``."""
    cols = _columns_v1(head)
    if cols is None:
        return None
    ids, updated, lengths = cols
    try:
        upd = array("d", map(neg, updated))
        offsets = array("Q", accumulate(lengths, initial=0))
    except (OverflowError, TypeError):
        return None  # an updated_at too large for a double, a negative length
    return _SnapIds.of(ids), upd, offsets, start + offsets[-1]


def _snapshot_v2(data: bytes, start: int, head: dict[str, Any]) -> _Snap | None:
    """Format 2: ``(ids, updated_at, offsets, end of the rows)``, or ``None``."""
    n, n_ids, order, crc = (head.get(k) for k in ("rows", "ids_bytes", "byteorder", "crc32"))
    if not all(type(v) is int and v >= 0 for v in (n, n_ids, crc)):
        return None
    assert isinstance(n, int) and isinstance(n_ids, int)
    if order not in ("little", "big"):
        return None
    view = memoryview(data)
    starts_at = start + n_ids
    upd_at = starts_at + 8 * (n + 1)
    offsets_at = upd_at + 8 * n
    cols_end = offsets_at + 8 * (n + 1)
    if cols_end > len(data) or zlib.crc32(view[start:cols_end]) != crc:
        return None
    starts: array[int] = array("Q")
    starts.frombytes(view[starts_at:upd_at])
    upd: array[float] = array("d")
    upd.frombytes(view[upd_at:offsets_at])
    offsets: array[int] = array("Q")
    offsets.frombytes(view[offsets_at:cols_end])
    if order != sys.byteorder:
        for column in (starts, upd, offsets):
            column.byteswap()
    if starts[0] != 0 or starts[-1] != n_ids or offsets[0] != 0:
        return None
    if n and data[starts_at - 1] != 0x0A:
        return None
    return _SnapIds(data[start:starts_at], starts), upd, offsets, cols_end + offsets[-1]


def _parse(data: bytes) -> _Parsed | None:
    """Decode the file; ``None`` if it is damaged (the caller rebuilds it)."""
    snap: _Snap | None = _SnapIds.of([]), array("d"), array("Q", [0]), 0
    if data.startswith(_HEADER):
        end = data.find(b"\n")
        if end < 0:
            return None
        try:
            head = orjson.loads(data[:end])
        except orjson.JSONDecodeError:
            return None
        if not isinstance(head, dict):
            return None
        version = head.get("index_format")
        if version == 1:
            snap = _snapshot_v1(data, end + 1, head)
        elif version == _FORMAT:
            snap = _snapshot_v2(data, end + 1, head)
        else:
            return None
    if snap is None:
        return None
    ids, upd, offsets, rows_end = snap
    rows_start = rows_end - offsets[-1]
    if rows_end > len(data) or (len(ids) and data[rows_end - 1 : rows_end] != b"\n"):
        return None
    tail = data[rows_end:]
    records = json_lines(tail)
    if tail and tail.count(b"\n") > len(records) + 1:
        return None  # a corrupt line in the middle
    for rec in records:
        if not isinstance(rec, dict) or not isinstance(rec.get("session_id"), str):
            return None
        u = rec.get("updated_at", 0.0)
        if type(u) is not float and type(u) is not int:
            return None  # e.g. a string updated_at: it could not be sorted
    return _Parsed(ids, upd, offsets, memoryview(data)[rows_start:rows_end], records)


def _snapshot(entries: list[tuple[float, str, bytes]]) -> bytes:
    """The file for ``entries`` (``(updated_at, id, row line)``), sorted here."""
    entries.sort(key=lambda e: sort_key(e[0], e[1]))
    ids = [e[1].encode() + b"\n" for e in entries]
    cols = [
        b"".join(ids),
        array("Q", accumulate(map(len, ids), initial=0)).tobytes(),
        array("d", [-e[0] for e in entries]).tobytes(),
        array("Q", accumulate([len(e[2]) for e in entries], initial=0)).tobytes(),
    ]
    crc = 0
    for col in cols:
        crc = zlib.crc32(col, crc)
    head = {
        "index_format": _FORMAT,
        "rows": len(entries),
        "ids_bytes": len(cols[0]),
        "byteorder": sys.byteorder,
        "crc32": crc,
    }
    return b"".join([orjson.dumps(head), b"\n", *cols, *(e[2] for e in entries)])


def _line(row: Row) -> bytes:
    return orjson.dumps(row) + b"\n"


Key = tuple[float, str]  # sort_key(updated_at, id)


def _key(row: Row, sid: str) -> Key:
    return (-row.get("updated_at", 0.0), sid)


class SessionIndex:
    """Rows of metadata (``Session.meta_dict()`` form) for every stored session.

    The event loop reads and updates memory (:meth:`get`, :meth:`put`, :meth:`remove`,
    :meth:`page`); the blocking file work (:meth:`load`, :meth:`append`,
    :meth:`replace_all`, :meth:`compact`) runs on the store's I/O threads.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._rows: dict[str, Row] = {}  # rows saved (or logged) since the snapshot
        self._keys: list[Key] = []  # their sort keys, sorted
        self._gone: set[str] = set()  # snapshot ids saved or deleted since (and others)
        self._gone_in_snap: int | None = 0  # how many of _gone the snapshot holds
        self._ids = _SnapIds.of([])  # the snapshot's columns, in list order
        self._negated: array[float] = array("d")  # -updated_at (ascending)
        self._offsets: array[int] = array("Q", [0])
        self._snap = memoryview(b"")  # the snapshot's row lines
        self._parsed: dict[int, Row] = {}  # snapshot rows parsed so far, by position
        self._pos: dict[str, int] | None = None  # id -> snapshot position, when needed
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
        self._reset(parsed)
        for rec in parsed.log:
            sid = rec["session_id"]
            self._gone.add(sid)
            if rec.get("deleted"):
                self._rows.pop(sid, None)
            else:
                self._rows[sid] = rec
        self._keys = sorted([_key(r, sid) for sid, r in self._rows.items()])
        self._gone_in_snap = None if self._gone else 0  # counted when first needed
        with self._file_lock:
            self._lines = len(parsed.log)
            self._snap_rows = len(parsed.ids)
        return True

    def _reset(self, parsed: _Parsed) -> None:
        self._rows, self._keys, self._gone, self._gone_in_snap = {}, [], set(), 0
        self._parsed, self._pos = {}, None
        self._ids, self._negated, self._offsets = parsed.ids, parsed.negated, parsed.offsets
        self._snap = parsed.rows

    def _set(self, rows: dict[str, Row]) -> None:
        """Every row, in memory only (parsed, no snapshot behind them)."""
        self._reset(_Parsed(_SnapIds.of([]), array("d"), array("Q", [0]), memoryview(b""), []))
        self._rows = rows
        self._keys = sorted([_key(r, sid) for sid, r in rows.items()])

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

    def compact_if_long(self, lines: int = _COMPACT_LINES) -> None:
        """Merge the log into the snapshot if it holds more than ``lines`` lines
        (blocking, atomic): the store calls it at close, so the next open reads a
        snapshot and at most ``lines`` log lines, not up to ``1024 + rows / 8``."""
        with self._file_lock:
            if self._lines > lines:
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
        rows, offsets = parsed.rows, parsed.offsets
        entries = [
            (-u, sid, bytes(rows[offsets[i] : offsets[i + 1]]))
            for i, (u, sid) in enumerate(zip(parsed.negated, parsed.ids.list(), strict=True))
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

    def _positions(self) -> dict[str, int]:
        if self._pos is None:
            self._pos = dict(zip(self._ids.list(), range(len(self._ids)), strict=True))
        return self._pos

    def _position(self, sid: str) -> int | None:
        """The snapshot position of a row not saved or deleted since, else None."""
        if sid in self._gone:
            return None
        return self._positions().get(sid)

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
            i = bisect.bisect_left(self._keys, key)
            if i < len(self._keys) and self._keys[i] == key:
                del self._keys[i]
            return
        if self._position(sid) is not None:
            self._gone.add(sid)
            if self._gone_in_snap is not None:
                self._gone_in_snap += 1

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

    def _snap_key(self, pos: int) -> Key:
        return (self._negated[pos], self._ids[pos])

    def _walk(self, after: tuple[float, str] | None) -> Iterator[int | str]:
        """Every row in list order (visible or hidden) sorting after the cursor key
        ``after``, the snapshot's and the log's merged: a snapshot position (int) or
        the id of a row saved since (str)."""
        ids, gone, keys = self._ids, self._gone, self._keys
        n, i, j = len(ids), 0, 0
        if after is not None:
            cursor = sort_key(*after)
            # the equal -updated_at run by C bisects on the column, then the ids in it
            neg_u = cursor[0]
            lo = bisect.bisect_left(self._negated, neg_u)
            hi = bisect.bisect_right(self._negated, neg_u, lo)
            i = bisect.bisect_right(range(n), cursor, lo, hi, key=self._snap_key)
            j = bisect.bisect_right(keys, cursor)
        while True:
            if gone:
                while i < n and ids[i] in gone:
                    i += 1
            if i < n and (j == len(keys) or self._snap_key(i) < keys[j]):
                yield i
                i += 1
            elif j < len(keys):
                yield keys[j][1]
                j += 1
            else:
                return

    def _row(self, at: int | str) -> Row:
        return self._snapshot_row(at) if isinstance(at, int) else self._rows[at]

    def page(self, limit: int, after: tuple[float, str] | None) -> list[Row]:
        """Up to ``limit`` visible rows sorting after the cursor key ``after``."""
        out: list[Row] = []
        rows, snapshot_row = self._rows, self._snapshot_row
        for at in self._walk(after):
            row = snapshot_row(at) if isinstance(at, int) else rows[at]
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
        return set(self._ids.list()).difference(self._gone).union(self._rows)

    def all_rows(self) -> dict[str, Row]:
        """Every row, parsed (a new mapping, in list order).

        :raises StoreError: as :meth:`get`.
        """
        ids = self._ids
        return {ids[at] if isinstance(at, int) else at: self._row(at) for at in self._walk(None)}

    def __contains__(self, sid: object) -> bool:
        return isinstance(sid, str) and self.get(sid) is not None

    def __len__(self) -> int:
        if self._gone_in_snap is None:
            pos = self._positions()
            self._gone_in_snap = sum(1 for sid in self._gone if sid in pos)
        return len(self._ids) - self._gone_in_snap + len(self._rows)
