"""The machine and package versions a run reports."""

from __future__ import annotations

import datetime
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "machine_info", "versions"]

#: Distributions whose versions a run records (missing ones are reported as ``None``).
PACKAGES = (
    "orjson",
    "anyio",
    "aiofiles",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "aiosqlite",
    "openai-agents",
    "uvicorn",
    "starlette",
    "httpx",
    "psutil",
    "rich",
)


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_total_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _fs_type(path: Path) -> str | None:
    """The file system type of the mount holding ``path`` (from /proc/mounts)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return None
    target = str(path.resolve())
    best: tuple[int, str] | None = None
    for fields in mounts:
        mnt, fstype = fields[1], fields[2]
        if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and (
            best is None or len(mnt) > best[0]
        ):
            best = (len(mnt), fstype)
    return None if best is None else best[1]


def machine_info(tmp_dir: Path) -> dict[str, Any]:
    """Where the run happened: CPU, cores, memory, kernel, Python, the temp dir's file system."""
    return {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": _mem_total_bytes(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "tmp_dir": str(tmp_dir),
        "tmp_fs": _fs_type(tmp_dir),
    }


def versions() -> dict[str, str | None]:
    """Versions of ``runtime`` and of :data:`PACKAGES` (``None`` if not installed)."""
    out: dict[str, str | None] = {}
    try:
        import runtime

        out["runtime"] = getattr(runtime, "__version__", None) or metadata.version("runtime")
    except (ImportError, metadata.PackageNotFoundError):
        out["runtime"] = "source tree"
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
