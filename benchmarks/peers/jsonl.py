"""The JSON-lines baseline: one line per message appended to a file, then ``fsync``.

It is the cheapest durable append a file-based store can do, so W1 shows how close
each system gets to it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

__all__ = ["JsonlLog"]


class JsonlLog:
    """An append-only JSON-lines file kept open (``O_APPEND``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def append(self, messages: list[dict[str, Any]]) -> None:
        """Write one line per message and fsync."""
        os.write(self._fd, b"".join(orjson.dumps(m) + b"\n" for m in messages))
        os.fsync(self._fd)

    def load(self) -> list[dict[str, Any]]:
        """Read the file and parse every line."""
        return [orjson.loads(line) for line in self.path.read_bytes().splitlines() if line]

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
