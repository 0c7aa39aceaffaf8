"""Startup recovery of a FileStore directory (blocking; run it in a worker thread).

The rules come from the hermes-webui chat UI, whose sessions were once wiped by a
save of a metadata-only object: a live file holding fewer messages than its
``.bak`` is restored from it; a ``.bak`` with no live file is restored as the
session; names starting with ``_`` (``_index.jsonl``, ``_README``…) are never
sessions; a tombstoned (deleted) session is never brought back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import orjson

from .._exceptions import CorruptSession, InvalidSessionId
from .._session import validate_session_id
from . import _fileio as fio
from .abc import RecoveryReport

__all__ = ["read_backup", "recover_directory"]

logger = logging.getLogger("runtime.stores.files")

_SUFFIXES = (".json.bak", ".json", ".journal", ".events.jsonl", ".ledger.jsonl")


def _scan(directory: Path) -> dict[str, set[str]]:
    """Session ids by file suffix; removes temp files left by a crash mid-write."""
    found: dict[str, set[str]] = {suffix: set() for suffix in _SUFFIXES}
    for entry in os.scandir(directory):
        name = entry.name
        if name.startswith("_"):
            continue
        if not entry.is_file():
            logger.warning("recover: ignoring %s (not a regular file)", entry.path)
            continue
        if name.startswith("."):
            if name.endswith(".tmp"):
                fio.unlink(Path(entry.path))  # never renamed into place: not acknowledged
            continue
        for suffix in _SUFFIXES:
            if name.endswith(suffix):
                sid = name[: -len(suffix)]
                try:
                    found[suffix].add(validate_session_id(sid))
                except InvalidSessionId:
                    logger.warning("recover: ignoring %s (not a session file name)", name)
                break
    return found


def _restore(directory: Path, sid: str, bak: dict[str, object], gen: int) -> None:
    """Make the backup the live session, under a generation no journal line has."""
    body = dict(bak, format=1, gen=gen)
    fio.atomic_write(directory / f"{sid}.json", orjson.dumps(body), sync_dir=False)
    fio.truncate_durable(directory / f"{sid}.journal")
    fio.fsync_dir(directory)
    fio.unlink(directory / f"{sid}.json.bak")


def read_backup(directory: Path, sid: str) -> dict[str, Any] | None:
    """The session's backup if it is whole and holds this session, else ``None``
    (a damaged one is moved to quarantine first)."""
    path = directory / f"{sid}.json.bak"
    try:
        bak = fio.read_session_file(path)
    except CorruptSession as exc:
        fio.quarantine(path, str(exc))
        return None
    if bak is not None and bak.get("session_id", sid) != sid:
        fio.quarantine(path, f"holds session {bak.get('session_id')!r}, not {sid!r}")
        return None
    return bak


def recover_directory(
    directory: Path,
    tombstones: Collection[str],
    indexed: Collection[str],
    count_and_gen: Callable[[str], tuple[int, int] | None],
) -> tuple[RecoveryReport, set[str]]:
    """Recover ``directory``; returns the report and the ids whose files changed or
    whose index row is missing or dangling (the caller re-indexes those, and
    quarantines any that still cannot be read).

    A damaged backup is moved to ``_quarantine/``; a damaged live snapshot with a
    whole backup is moved there too and the backup restored.

    :param count_and_gen: reads a live session's (message count, generation).
    """
    found = _scan(directory)
    snaps, baks = found[".json"], found[".json.bak"]
    changed: set[str] = set()
    for sid in set(tombstones) & set().union(*found.values()):
        for suffix in _SUFFIXES:  # finish a delete that a crash interrupted
            fio.unlink(directory / f"{sid}{suffix}")
        snaps.discard(sid)
        baks.discard(sid)
        changed.add(sid)
    restored = orphaned = quarantined = 0
    for sid in sorted(baks):
        changed.add(sid)
        bak = read_backup(directory, sid)
        if bak is None:
            quarantined += 1
            continue
        live: tuple[int, int] | None = None
        if sid in snaps:
            try:
                live = count_and_gen(sid)
            except CorruptSession as exc:
                fio.quarantine(directory / f"{sid}.json", str(exc))
                quarantined += 1
        messages = bak["messages"]
        if live is None:
            fio.unlink(directory / f"{sid}.journal")
            _restore(directory, sid, bak, bak.get("gen", 0) + 1)
            snaps.add(sid)
            orphaned += 1
            restored += 1
        elif live[0] < len(messages):
            _restore(directory, sid, bak, max(live[1], bak.get("gen", 0)) + 1)
            restored += 1
        else:
            fio.unlink(directory / f"{sid}.json.bak")  # superseded by the live file
        logger.warning(
            "recover: session %s %s",
            sid,
            "restored from its backup"
            if live is None or live[0] < len(messages)
            else "kept; stale backup removed",
        )
    for sid in found[".ledger.jsonl"] - snaps:
        # a tool ledger belongs to a stored session; a new session of that id must
        # not inherit one left without it (moved aside, not counted as a session)
        fio.quarantine(directory / f"{sid}.ledger.jsonl", "a tool ledger with no session")
    changed |= snaps.symmetric_difference(indexed)
    report: RecoveryReport = {
        "scanned": len(snaps),
        "restored": restored,
        "orphaned_backups": orphaned,
        "quarantined": quarantined,
    }
    return report, changed
