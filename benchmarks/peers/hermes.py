"""The hermes-webui method: the whole session JSON rewritten on every save.

``json.dumps(..., ensure_ascii=False, indent=2)``, a temp file, ``fsync``, ``os.replace``
— as hermes-webui's ``Session.save()`` does (api/models.py). Its real save also reads
and parses the previous file first to decide on a backup; that extra read is left out
here, which flatters it.

For W7/W8: its session list is an ``_index.json`` array of compact rows rewritten the
same way; its startup pass globs ``*.json``, parses every session file and rewrites the
index.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["HermesSession", "compact_row", "list_page", "startup_rebuild", "write_index"]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class HermesSession:
    """One session file ``<dir>/<session_id>.json``, rewritten whole on each save."""

    def __init__(self, directory: Path, session_id: str, *, title: str = "bench") -> None:
        self.path = directory / f"{session_id}.json"
        self.meta: dict[str, Any] = {
            "session_id": session_id,
            "title": title,
            "created_at": 0.0,
            "updated_at": 0.0,
        }
        self.messages: list[dict[str, Any]] = []

    def save(self, *, durable: bool = True) -> None:
        """Rewrite the whole file: dumps, temp file, fsync (if ``durable``), replace."""
        data = {**self.meta, "message_count": len(self.messages), "messages": self.messages}
        payload = json.dumps(data, ensure_ascii=False, indent=2)
        if durable:
            _atomic_write(self.path, payload)
        else:
            self.path.write_text(payload, encoding="utf-8")

    def load(self) -> dict[str, Any]:
        """Read and parse the whole file."""
        data: dict[str, Any] = json.loads(self.path.read_text(encoding="utf-8"))
        return data


def compact_row(data: dict[str, Any]) -> dict[str, Any]:
    """The index row of a session (hermes' ``Session.compact()``, reduced)."""
    return {
        "session_id": data["session_id"],
        "title": data.get("title"),
        "message_count": len(data.get("messages") or ()),
        "created_at": data.get("created_at"),
        "updated_at": data.get("updated_at"),
    }


def write_index(directory: Path, rows: list[dict[str, Any]]) -> None:
    """Sort rows newest first and rewrite ``_index.json`` atomically and durably."""
    rows.sort(key=lambda r: r.get("updated_at", 0), reverse=True)
    _atomic_write(directory / "_index.json", json.dumps(rows, ensure_ascii=False, indent=2))


def list_page(directory: Path, offset: int, limit: int) -> list[dict[str, Any]]:
    """One page of the list: parse the whole index, sort, slice."""
    rows: list[dict[str, Any]] = json.loads((directory / "_index.json").read_bytes())
    rows.sort(key=lambda r: r.get("updated_at", 0), reverse=True)
    return rows[offset : offset + limit]


def startup_rebuild(directory: Path) -> int:
    """The startup pass: for each ``*.json`` session (not ``_``-prefixed) parse the file,
    compare with its ``.bak`` if any, then rewrite the index. Returns sessions scanned."""
    rows = []
    for path in directory.glob("*.json"):
        if path.name.startswith("_"):
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        bak = path.with_name(path.name + ".bak")
        if bak.exists():
            old = json.loads(bak.read_text(encoding="utf-8"))
            if len(old.get("messages") or ()) > len(data.get("messages") or ()):
                data = old
        rows.append(compact_row(data))
    write_index(directory, rows)
    return len(rows)
