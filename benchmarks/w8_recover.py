"""W8: startup ``recover()`` over a store holding S sessions, seconds.

Runtime: a fresh ``FileStore`` opened on the root, then ``recover()`` timed (``open()``
reported beside it). Baselines: hermes-webui's startup pass (parse every session file,
check backups, rewrite the index), and the floor of any per-file pass: ``os.scandir``
+ ``stat`` of every entry of the directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio

from ._config import Context
from ._labels import size_label
from ._populate import hermes_store, runtime_store
from ._report import Result, Table, fmt
from ._rt import runtime_missing
from ._stats import median, now_ms
from .peers.hermes import startup_rebuild

ID = "W8"
TITLE = "W8 startup recovery (median seconds)"


def _scan(directory: Path) -> int:
    n = 0
    with os.scandir(directory) as it:
        for entry in it:
            entry.stat()
            n += 1
    return n


async def _runtime(ctx: Context, s: int) -> tuple[float, float]:
    from runtime.stores.files import FileStore

    root = await runtime_store(ctx, s)
    opens, recovers = [], []
    for _ in range(ctx.config.recover_reps):
        store = FileStore(root)
        t0 = now_ms()
        await store.open()
        try:
            t1 = now_ms()
            report = await store.recover()
            t2 = now_ms()
        finally:
            await store.aclose()
        if report["scanned"] < s:
            raise RuntimeError(f"recover() scanned {report['scanned']} sessions, expected {s}")
        opens.append((t1 - t0) / 1000)
        recovers.append((t2 - t1) / 1000)
    return median(recovers), median(opens)


async def run(ctx: Context) -> Result:
    """Populate (or reuse) the stores and time the recovery passes."""
    cfg = ctx.config
    sizes = cfg.store_sizes
    res = Result(ID, TITLE, "s")
    table = Table(TITLE, ["system", *(f"S={size_label(s)}" for s in sizes)])
    reason = runtime_missing("filestore")
    if reason is not None:
        res.notes["runtime"] = reason
        res.systems["runtime"] = {str(s): None for s in sizes}
        table.add("runtime FileStore.recover()", reason.split(" (")[0])
    else:
        runs = {s: await _runtime(ctx, s) for s in sizes}
        res.systems["runtime"] = {str(s): round(runs[s][0], 4) for s in sizes}
        res.extra["runtime_open_s"] = {str(s): round(runs[s][1], 4) for s in sizes}
        table.add("runtime FileStore.recover()", *(fmt(runs[s][0]) for s in sizes))
        table.add("  (runtime FileStore.open() before it)", *(fmt(runs[s][1]) for s in sizes))
        scan = {}
        for s in sizes:
            d = (await runtime_store(ctx, s)) / "sessions"
            samples = []
            for _ in range(cfg.recover_reps):
                t0 = now_ms()
                await anyio.to_thread.run_sync(_scan, d)
                samples.append((now_ms() - t0) / 1000)
            scan[s] = median(samples)
        res.systems["scandir_stat"] = {str(s): round(scan[s], 4) for s in sizes}
        table.add("floor: scandir + stat of every file", *(fmt(scan[s]) for s in sizes))
    hermes = {}
    for s in sizes:
        d = await hermes_store(ctx, s)
        samples = []
        for _ in range(cfg.recover_reps):
            t0 = now_ms()
            n = await anyio.to_thread.run_sync(startup_rebuild, d)
            samples.append((now_ms() - t0) / 1000)
            if n != s:
                raise RuntimeError(f"hermes startup pass saw {n} sessions, expected {s}")
        hermes[s] = median(samples)
    res.systems["hermes_startup"] = {str(s): round(hermes[s], 4) for s in sizes}
    table.add("hermes-webui startup pass (parse all + index)", *(fmt(hermes[s]) for s in sizes))
    table.footnotes.append(
        f"median of {cfg.recover_reps} passes, each on a fresh store instance; a clean store "
        "(nothing to restore), 3 messages per session; the page cache is warm"
    )
    res.tables.append(table)
    return res
