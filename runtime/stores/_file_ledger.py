"""The tool ledger of a FileStore: ``<id>.ledger.jsonl`` beside the session's snapshot.

One JSON line per record change (a whole :class:`~runtime.stores.abc.ToolCallRecord`
each: the intent, then the result), appended with ``O_APPEND`` in one ``write`` and
``fdatasync``'d: a round of intent and result costs two ``fdatasync`` calls (plus one
directory ``fsync`` when the file is created). Reading folds the lines by
``(stream_id, call_id)`` in the order the calls first appear; the first result a call
gets wins, as in every store.

* A torn last line (a crash mid-append; it was never acknowledged) is ignored; the next
  write rewrites the file first, since an append glued to the fragment would be lost.
* A damaged line in the middle is skipped, logged and a copy of the file kept in
  ``_quarantine/``. Unlike the session journal, the lines after it still apply: each
  line is a whole record, not a delta of the one before, so skipping one loses at
  most that change (a result: the call then reads ``started``, outcome unknown).
* The file keeps the ledgers of the session's latest streams: once it holds
  ``2 * keep`` streams, the first record of another rewrites it with the latest
  ``keep``, that one included (one rewrite, a temporary file, an ``fsync`` and a
  rename, per ``keep + 1`` turns). A resumed turn needs only its own stream's ledger,
  the latest.

The functions here block; the store calls them on its I/O thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from . import _fileio as fio
from .abc import ToolCallRecord, tool_call_record_error

__all__ = ["Ledger", "encode_record", "read_ledger"]

logger = logging.getLogger("runtime.stores.files")


@dataclass(slots=True)
class Ledger:
    """What ``<id>.ledger.jsonl`` holds, folded.

    :ivar records: ``{(stream_id, call_id): record}`` in the order the calls started.
    :ivar streams: stream ids in the order of their first record.
    :ivar exists: the file exists (its directory entry is durable).
    :ivar clean: an append is safe (no torn tail, no damaged line to drop first).
    """

    records: dict[tuple[str, str], ToolCallRecord] = field(default_factory=dict)
    streams: list[str] = field(default_factory=list)
    exists: bool = False
    clean: bool = True

    def add(self, record: ToolCallRecord) -> None:
        """Fold one record in: a new call goes last; a call that has a result keeps it."""
        key = (record.stream_id, record.call_id)
        stored = self.records.get(key)
        if stored is not None and stored.state != "started":
            return
        if record.stream_id not in self.streams:
            self.streams.append(record.stream_id)
        self.records[key] = record

    def needs_rewrite(self, record: ToolCallRecord, keep: int) -> bool:
        """True if ``record`` must go in by a rewrite, not an append (``keep``: the
        streams a pruning rewrite keeps)."""
        return not self.clean or (
            record.stream_id not in self.streams and len(self.streams) >= 2 * keep
        )

    def rewritten(self, record: ToolCallRecord, keep: int) -> Ledger:
        """A clean copy with ``record`` folded in, holding only the latest ``keep``
        streams if it would hold more than ``2 * keep``."""
        streams = [*self.streams, record.stream_id]
        kept = set(streams[-keep:] if len(set(streams)) > 2 * keep else streams)
        out = Ledger(exists=True)
        for r in (*self.records.values(), record):
            if r.stream_id in kept:
                out.add(r)
        return out

    def encode(self) -> bytes:
        """The whole file: one line per record."""
        return b"".join(orjson.dumps(r.to_dict()) + b"\n" for r in self.records.values())


def encode_record(record: ToolCallRecord) -> bytes:
    """One appended line."""
    return orjson.dumps(record.to_dict()) + b"\n"


def read_ledger(path: Path, session_id: str, *, quarantine: bool) -> Ledger:
    """Read and fold a ledger file (missing: an empty ledger).

    :param quarantine: copy a file with damaged lines to ``_quarantine/`` (not when the
        store is read-only: it writes nothing).
    :raises OSError: if the file cannot be read.
    """
    data = fio.read_bytes(path)
    if data is None:
        return Ledger()
    ledger = Ledger(exists=True)
    lines = data.split(b"\n")
    ledger.clean = lines[-1] == b""  # the piece after the last newline is torn
    damaged: list[str] = []
    for number, line in enumerate(lines[:-1], 1):
        if not line:
            continue
        try:
            d = orjson.loads(line)
        except orjson.JSONDecodeError:
            damaged.append(f"line {number} is not valid JSON")
            continue
        problem = tool_call_record_error(d)
        if problem is None and d["session_id"] != session_id:
            problem = f"holds session {d['session_id']!r}"
        if problem is not None:
            damaged.append(f"line {number}: {problem}")
            continue
        ledger.add(ToolCallRecord.from_dict(d))
    if damaged:
        ledger.clean = False
        reason = "; ".join(damaged) + " (skipped; the other lines apply)"
        if quarantine:
            fio.quarantine(path, reason, copy=True)
        else:
            logger.error("tool ledger %s is damaged: %s", path, reason)
    return ledger
