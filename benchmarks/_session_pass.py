"""The measuring pass behind W1, W2 and W3 (run once, shared by the three tables).

For each N and each system: build a session of N messages, make ``warmup`` untimed
appends, then ``reps`` timed appends of one ~1.1 KiB tool result, each durable when
it returns (W1), recording the bytes the process handed to ``write()`` and the bytes
it sent to storage around each append (W2); then reopen and time full loads (W3).
The 1-byte write+fsync floor is measured before and after, in the same run.
Every system's files live in a temp dir removed as soon as its cell is done.
"""

from __future__ import annotations

import gc
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from ._config import Context
from ._shapes import appended_message, history, json_size
from ._stats import dir_size, io_counters, now_ms
from ._systems import SESSION_SYSTEMS, make_system, system_missing

__all__ = ["Cell", "SessionPass", "fsync_floor", "session_pass"]


@dataclass
class Cell:
    """Raw samples of one (system, N)."""

    append_ms: list[float] = field(default_factory=list)
    wchar: list[int] = field(default_factory=list)
    write_bytes: list[int] = field(default_factory=list)
    growth: list[int] = field(default_factory=list)
    load_ms: list[float] = field(default_factory=list)
    build_s: float = 0.0
    peak_disk_bytes: int = 0


@dataclass
class SessionPass:
    """Everything the pass measured."""

    floor_ms: list[float]
    cells: dict[str, dict[int, Cell]]
    orjson_ms: dict[int, list[float]]
    notes: dict[str, str]
    appended_bytes: int
    reps: dict[str, dict[int, int]]


def fsync_floor(directory: Path, reps: int) -> list[float]:
    """``reps`` timings (ms) of a bare 1-byte append + ``fsync`` on one open file."""
    path = directory / "floor.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    samples = []
    try:
        os.write(fd, b"x")
        os.fsync(fd)
        for _ in range(reps):
            t0 = now_ms()
            os.write(fd, b"x")
            os.fsync(fd)
            samples.append(now_ms() - t0)
    finally:
        os.close(fd)
        path.unlink()
    return samples


async def _measure(
    name: str, workdir: Path, base: list[dict[str, object]], warmup: int, reps: int, load_reps: int
) -> Cell:
    cell = Cell()
    system = make_system(name, workdir)
    try:
        t0 = now_ms()
        await system.build(list(base))
        cell.build_s = (now_ms() - t0) / 1000.0
        gc.collect()
        for i in range(warmup):
            await system.append(appended_message(i))
        for i in range(warmup, warmup + reps):
            msg = appended_message(i)
            size0 = dir_size(workdir)
            io0 = io_counters()
            t0 = now_ms()
            await system.append(msg)
            elapsed = now_ms() - t0
            io1 = io_counters()
            size1 = dir_size(workdir)
            cell.append_ms.append(elapsed)
            cell.growth.append(size1 - size0)
            cell.peak_disk_bytes = max(cell.peak_disk_bytes, size1)
            if io0 is not None and io1 is not None:
                cell.wchar.append(io1[0] - io0[0])
                cell.write_bytes.append(io1[1] - io0[1])
        await system.reopen()
        expected = len(base) + warmup + reps
        for _ in range(load_reps):
            gc.collect()
            t0 = now_ms()
            count = await system.load()
            cell.load_ms.append(now_ms() - t0)
            if count != expected:
                raise RuntimeError(f"{name} loaded {count} messages, expected {expected}")
    finally:
        await system.close()
    return cell


def _orjson_baseline(directory: Path, messages: list[dict[str, object]], reps: int) -> list[float]:
    path = directory / "orjson.json"
    path.write_bytes(orjson.dumps({"messages": messages}))
    samples = []
    try:
        for _ in range(reps):
            gc.collect()
            t0 = now_ms()
            # Parsed, counted and freed inside the timer, as every system's load() is.
            count = len(orjson.loads(path.read_bytes())["messages"])
            samples.append(now_ms() - t0)
            if count != len(messages):
                raise RuntimeError(f"orjson baseline parsed {count} of {len(messages)} messages")
    finally:
        path.unlink()
    return samples


async def session_pass(ctx: Context, *, log: bool = True) -> SessionPass:
    """Run (or return the cached) W1-W3 pass."""
    cached = ctx.cache.get("session_pass")
    if isinstance(cached, SessionPass):
        return cached
    cfg = ctx.config
    notes: dict[str, str] = {}
    for name in SESSION_SYSTEMS:
        reason = system_missing(name)
        if reason is not None:
            notes[name] = reason
    systems = [n for n in SESSION_SYSTEMS if n not in notes]
    floor = fsync_floor(ctx.tmp, cfg.floor_reps)
    cells: dict[str, dict[int, Cell]] = {name: {} for name in systems}
    reps_used: dict[str, dict[int, int]] = {name: {} for name in systems}
    orjson_ms: dict[int, list[float]] = {}
    for n in cfg.sizes:
        base = history(n)
        for name in systems:
            reps = cfg.langgraph_reps(n) if name == "langgraph_sqlite" else cfg.append_reps
            workdir = ctx.tmp / f"w123-{name}-{n}"
            workdir.mkdir()
            if log:
                print(f"  W1-W3 {name} N={n} ({reps} appends)", flush=True)
            try:
                cells[name][n] = await _measure(
                    name, workdir, base, cfg.warmup, reps, cfg.load_reps
                )
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            reps_used[name][n] = reps
        extra = [appended_message(i) for i in range(cfg.warmup + cfg.append_reps)]
        orjson_ms[n] = _orjson_baseline(ctx.tmp, base + extra, cfg.load_reps)
        del base
        gc.collect()
    floor += fsync_floor(ctx.tmp, cfg.floor_reps)
    result = SessionPass(floor, cells, orjson_ms, notes, json_size(appended_message(0)), reps_used)
    ctx.cache["session_pass"] = result
    return result
