"""Count CPython's cyclic garbage collections and the time they take while active.

Used where the profiles showed that collection pauses, not the work itself, set the
figure (W4, W6): the tables print what the collector cost during the measurement.
"""

from __future__ import annotations

import gc
import time
from types import TracebackType
from typing import Any

__all__ = ["GcWatch"]


class GcWatch:
    """``with GcWatch() as w: ...`` then ``w.count[g]``, ``w.seconds[g]``, ``w.max_pause``
    for generations 0, 1, 2 (seconds)."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.max_pause = 0.0
        self._start = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
            return
        pause = time.perf_counter() - self._start
        gen = int(info["generation"])
        self.count[gen] += 1
        self.seconds[gen] += pause
        self.max_pause = max(self.max_pause, pause)

    @property
    def total(self) -> float:
        """Seconds spent collecting, all generations."""
        return sum(self.seconds)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary: counts and ms per generation, total ms, longest pause ms."""
        return {
            "collections": list(self.count),
            "ms": [round(s * 1000, 1) for s in self.seconds],
            "total_ms": round(self.total * 1000, 1),
            "max_pause_ms": round(self.max_pause * 1000, 1),
        }

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        gc.callbacks.remove(self._callback)
