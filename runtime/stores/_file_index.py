"""FileStore's session index: derived data, one appended line per indexed save.

On disk: ``_index.jsonl``, one JSON object per line, the last line for an id wins;
``{"session_id": id, "deleted": true}`` removes it. In memory: the rows by id plus a
list of sort keys kept in order, so a page is a binary search and a slice
(O(log S + page)), not a sort of every session.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

import orjson

from ._fileio import append_durable, atomic_write, json_lines, read_bytes
from .abc import sort_key, visible_in_list

__all__ = ["SessionIndex"]

Row = dict[str, Any]


def _visible(row: Row) -> bool:
    return visible_in_list(
        row.get("title", "Untitled"),
        row.get("message_count", 0),
        row.get("active_stream_id"),
        row.get("pending_user_message"),
    )


class SessionIndex:
    """Rows of metadata (``Session.meta_dict()`` form) for every stored session."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, Row] = {}
        self._keys: list[tuple[float, str]] = []
        self._lines = 0

    # -- loading ---------------------------------------------------------------------

    def load(self) -> bool:
        """Read the file (blocking). Returns ``False`` if it is missing or unusable,
        in which case the caller rebuilds it from the session files."""
        data = read_bytes(self.path)
        if data is None:
            return False
        records = json_lines(data)
        if data and data.count(b"\n") > len(records) + 1:
            return False  # a corrupt line in the middle: rebuild
        rows: dict[str, Row] = {}
        for rec in records:
            if not isinstance(rec, dict) or not isinstance(rec.get("session_id"), str):
                return False
            updated_at = rec.get("updated_at", 0.0)
            if type(updated_at) is not float and type(updated_at) is not int:
                return False  # e.g. a string updated_at: it could not be sorted
            if rec.get("deleted"):
                rows.pop(rec["session_id"], None)
            else:
                rows[rec["session_id"]] = rec
        self._set(rows)
        self._lines = len(records)
        return True

    def _set(self, rows: dict[str, Row]) -> None:
        self.rows = rows
        self._keys = sorted(sort_key(r.get("updated_at", 0.0), sid) for sid, r in rows.items())

    def replace_all(self, rows: dict[str, Row]) -> None:
        """Set every row and rewrite the file compactly (blocking, atomic)."""
        self._set(rows)
        self.compact()

    def compact(self) -> None:
        """Rewrite the file with one line per live row (blocking, atomic)."""
        data = b"".join(orjson.dumps(r) + b"\n" for r in self.rows.values())
        atomic_write(self.path, data)
        self._lines = len(self.rows)

    # -- updates (memory in the event loop; the returned line is written by append) --

    def _unkey(self, sid: str) -> None:
        old = self.rows.get(sid)
        if old is not None:
            key = sort_key(old.get("updated_at", 0.0), sid)
            i = bisect.bisect_left(self._keys, key)
            if i < len(self._keys) and self._keys[i] == key:
                del self._keys[i]

    def put(self, row: Row) -> bytes:
        """Record a row in memory; returns the line for :meth:`append`."""
        sid = row["session_id"]
        self._unkey(sid)
        self.rows[sid] = row
        bisect.insort(self._keys, sort_key(row.get("updated_at", 0.0), sid))
        return orjson.dumps(row) + b"\n"

    def remove(self, sid: str) -> bytes:
        """Forget a row in memory; returns the line for :meth:`append`."""
        if sid in self.rows:
            self._unkey(sid)
            del self.rows[sid]
        return orjson.dumps({"session_id": sid, "deleted": True}) + b"\n"

    def compaction_due(self) -> list[Row] | None:
        """The rows to rewrite if the file holds far more lines than rows, else None."""
        if self._lines > 2 * len(self.rows) + 1024:
            return list(self.rows.values())
        return None

    def append(self, lines: bytes, rewrite: list[Row] | None = None) -> None:
        """Blocking: append ``lines`` durably, or rewrite the file from ``rewrite``."""
        if rewrite is not None:
            atomic_write(self.path, b"".join(orjson.dumps(r) + b"\n" for r in rewrite))
            self._lines = len(rewrite)
            return
        append_durable(self.path, lines, created=self._lines > 0)
        self._lines += lines.count(b"\n")

    # -- reading -----------------------------------------------------------------------

    def page(self, limit: int, after: tuple[float, str] | None) -> list[Row]:
        """Up to ``limit`` visible rows sorting after the cursor key ``after``."""
        keys = self._keys
        start = 0 if after is None else bisect.bisect_right(keys, sort_key(*after))
        out: list[Row] = []
        rows = self.rows
        for i in range(start, len(keys)):
            row = rows[keys[i][1]]
            if _visible(row):
                out.append(row)
                if len(out) == limit:
                    break
        return out

    def has_visible_after(self, updated_at: float, sid: str) -> bool:
        """True if a visible row sorts after ``(updated_at, sid)``."""
        return bool(self.page(1, (updated_at, sid)))

    def __contains__(self, sid: object) -> bool:
        return sid in self.rows

    def __len__(self) -> int:
        return len(self.rows)
