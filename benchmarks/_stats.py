"""Small statistics and measuring helpers (medians, percentiles, process I/O counters)."""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "dir_size",
    "io_counters",
    "median",
    "now_ms",
    "peak_rss_bytes",
    "percentile",
]


def now_ms() -> float:
    """A monotonic clock in milliseconds (``time.perf_counter``)."""
    return time.perf_counter() * 1000.0


def median(values: Sequence[float]) -> float:
    """The median of ``values``.

    :raises ValueError: if ``values`` is empty.
    """
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linear between closest ranks.

    :raises ValueError: if ``values`` is empty or ``q`` is outside 0..100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"invalid percentile {q!r}: must be within 0..100")
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return float(data[lo] + (data[hi] - data[lo]) * (pos - lo))


_PROC_IO = Path("/proc/self/io")


def io_counters() -> tuple[int, int] | None:
    """``(wchar, write_bytes)`` of this process from ``/proc/self/io``, or ``None``.

    ``wchar`` counts bytes handed to ``write()``/``pwrite()`` by every thread of the
    process (what a system asks the kernel to write); ``write_bytes`` counts bytes this
    process caused to be sent to storage, in whole pages (4 KiB).
    """
    try:
        text = _PROC_IO.read_text()
    except OSError:
        return None
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return int(fields["wchar"]), int(fields["write_bytes"])


def dir_size(path: Path) -> int:
    """Sum of ``st_size`` of the regular files under ``path``, in bytes (0 if absent)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                continue
    return total


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far, in bytes.

    ``VmHWM`` from ``/proc/self/status`` where it exists: it starts afresh at ``exec``,
    whereas ``getrusage``'s ``ru_maxrss`` (the fallback) keeps the peak of the forked
    parent's memory image, which would charge a child with its parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
