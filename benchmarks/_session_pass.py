"""The measuring pass behind W1, W2 and W3 (run once, shared by the three tables).

For each N: build every system's session of N messages (each in its own temp dir)
and make ``warmup`` untimed appends; then ``passes`` interleaved passes. Each pass
measures the 1-byte write+fsync floor, then every system in turn (the order rotates
from pass to pass) making ``reps`` timed appends of one ~1.1 KiB tool result, each
durable when it returns (W1), with the bytes the process handed to ``write()`` and
sent to storage around each append (W2); then the ``orjson.loads`` baseline and every
system's full load through a reopened instance (W3). Ratios are taken pass by pass
against the floor or baseline of the same pass (see :mod:`benchmarks._passes`).
Every system's files live in a temp dir removed as soon as its N is done.
"""

from __future__ import annotations

import gc
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from ._config import Context
from ._passes import rotated
from ._shapes import appended_message, history, json_size
from ._stats import dir_size, io_counters, now_ms
from ._systems import SESSION_SYSTEMS, SessionSystem, make_system, system_missing

__all__ = ["Cell", "SessionPass", "fsync_floor", "session_pass"]


@dataclass
class Cell:
    """Raw samples of one (system, N): timings one list per pass, bytes pooled."""

    append_ms: list[list[float]] = field(default_factory=list)
    wchar: list[int] = field(default_factory=list)
    write_bytes: list[int] = field(default_factory=list)
    growth: list[int] = field(default_factory=list)
    load_ms: list[list[float]] = field(default_factory=list)
    build_s: float = 0.0
    peak_disk_bytes: int = 0


@dataclass
class SessionPass:
    """Everything the pass measured; ``floor_ms`` and ``orjson_ms`` per N, one list per
    pass, aligned with the cells' passes."""

    floor_ms: dict[int, list[list[float]]]
    cells: dict[str, dict[int, Cell]]
    orjson_ms: dict[int, list[list[float]]]
    notes: dict[str, str]
    appended_bytes: int
    reps: dict[str, dict[int, int]]
    passes: int


def fsync_floor(directory: Path, reps: int) -> list[float]:
    """``reps`` timings (ms) of a bare 1-byte append + ``fsync`` on one open file.

    Each is timed as :func:`_appends` times a system's append: between the bookkeeping
    it does around every append (``dir_size`` of the file's directory and
    ``/proc/self/io``, before and after). Timed back to back instead, the same
    write + ``fsync`` measured ~1.25x faster on the benchmark machine (interleaved
    blocks, see docs/benchmarks.md), a condition no system's append gets."""
    floor_dir = directory / "floor"
    floor_dir.mkdir()
    path = floor_dir / "floor.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    samples = []
    try:
        os.write(fd, b"x")
        os.fsync(fd)
        for _ in range(reps):
            dir_size(floor_dir)
            io_counters()
            t0 = now_ms()
            os.write(fd, b"x")
            os.fsync(fd)
            samples.append(now_ms() - t0)
            io_counters()
            dir_size(floor_dir)
    finally:
        os.close(fd)
        shutil.rmtree(floor_dir, ignore_errors=True)
    return samples


@dataclass
class _Running:
    """One system under measurement at one N."""

    name: str
    system: SessionSystem
    workdir: Path
    reps: int
    cell: Cell
    appended: int = 0


async def _appends(r: _Running, reps: int, *, timed: bool) -> None:
    samples: list[float] = []
    for _ in range(reps):
        msg = appended_message(r.appended)
        if not timed:
            await r.system.append(msg)
            r.appended += 1
            continue
        size0 = dir_size(r.workdir)
        io0 = io_counters()
        t0 = now_ms()
        await r.system.append(msg)
        elapsed = now_ms() - t0
        io1 = io_counters()
        size1 = dir_size(r.workdir)
        r.appended += 1
        samples.append(elapsed)
        r.cell.growth.append(size1 - size0)
        r.cell.peak_disk_bytes = max(r.cell.peak_disk_bytes, size1)
        if io0 is not None and io1 is not None:
            r.cell.wchar.append(io1[0] - io0[0])
            r.cell.write_bytes.append(io1[1] - io0[1])
    if timed:
        r.cell.append_ms.append(samples)


async def _loads(r: _Running, n: int, reps: int) -> None:
    await r.system.reopen()
    expected = n + r.appended
    samples = []
    for _ in range(reps):
        gc.collect()
        t0 = now_ms()
        count = await r.system.load()
        samples.append(now_ms() - t0)
        if count != expected:
            raise RuntimeError(f"{r.name} loaded {count} messages, expected {expected}")
    r.cell.load_ms.append(samples)
    settle = getattr(r.system, "settle", None)
    if settle is not None:  # background work the loads started (FileStore's compaction)
        await settle()


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


def _order(running: list[_Running], p: int) -> list[_Running]:
    """Pass ``p``'s order of the systems: rotated by ``p`` and, every other pass, reversed.

    A plain rotation keeps each system's neighbours: the one after LangGraph (whose
    appends rewrite the whole history into SQLite, up to ~60 MB at 50k) would follow it
    in every pass but one, and its first ``fsync`` would commit whatever file-system
    metadata the heavy writer left in ext4's journal. Reversing every other pass varies
    the predecessors: with six systems and five passes, FileStore runs right after
    the floor twice, after LangGraph twice and after JSON lines once (after LangGraph
    four times out of five with the plain rotation)."""
    order = rotated(running, p)
    return order[::-1] if p % 2 else order


async def _size(ctx: Context, n: int, systems: list[str], sp: SessionPass, log: bool) -> None:
    cfg = ctx.config
    base = history(n)
    running: list[_Running] = []
    try:
        for name in systems:
            reps = cfg.langgraph_reps(n) if name == "langgraph_sqlite" else cfg.append_reps
            workdir = ctx.tmp / f"w123-{name}-{n}"
            workdir.mkdir()
            r = _Running(name, make_system(name, workdir), workdir, reps, Cell())
            running.append(r)
            t0 = now_ms()
            await r.system.build(list(base))
            r.cell.build_s = (now_ms() - t0) / 1000.0
            await _appends(r, cfg.warmup, timed=False)
            sp.cells[name][n] = r.cell
            sp.reps[name][n] = reps * cfg.passes
        sp.floor_ms[n], sp.orjson_ms[n] = [], []
        for p in range(cfg.passes):
            if log:
                print(f"  W1-W3 N={n} pass {p + 1}/{cfg.passes}", flush=True)
            gc.collect()
            sp.floor_ms[n].append(fsync_floor(ctx.tmp, cfg.floor_reps))
            for r in _order(running, p):
                await _appends(r, r.reps, timed=True)
            total = cfg.warmup + (p + 1) * cfg.append_reps
            extra = [appended_message(i) for i in range(total)]
            sp.orjson_ms[n].append(_orjson_baseline(ctx.tmp, base + extra, cfg.load_reps))
            for r in _order(running, p):
                await _loads(r, n, cfg.load_reps)
    finally:
        for r in running:
            try:
                await r.system.close()
            finally:
                shutil.rmtree(r.workdir, ignore_errors=True)
    del base
    gc.collect()


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
    sp = SessionPass(
        floor_ms={},
        cells={name: {} for name in systems},
        orjson_ms={},
        notes=notes,
        appended_bytes=json_size(appended_message(0)),
        reps={name: {} for name in systems},
        passes=cfg.passes,
    )
    for n in cfg.sizes:
        await _size(ctx, n, systems, sp, log)
    ctx.cache["session_pass"] = sp
    return sp
