"""W6: T concurrent live turns in one process, each streaming tokens and checkpointing;
peak RSS and p99 event latency (publish ``ts`` -> receipt by a subscriber).

Each store runs in its own child process (``_w6_child``) so that the peak RSS is that
of the workload alone. Every turn waits until all T turns are live, then streams K
tokens ``w6_token_interval`` s apart, makes one tool call half way (so checkpoints
have something to save; checkpoint_interval = 1 s) and replies.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson

from ._config import Context
from ._labels import size_label
from ._report import Result, Table, fmt
from ._rt import runtime_missing

_HERE = str(Path(__file__).resolve().parent.parent)

ID = "W6"
TITLE = "W6 concurrent live turns in one process (peak RSS, event latency)"

LABELS = {
    "asyncio_bare": "bare asyncio tasks + queues (floor)",
    "runtime_memory": "runtime + MemoryStore",
    "runtime_file": "runtime + FileStore",
}


async def _child(store: str, ctx: Context, root: Path) -> dict[str, Any]:
    cfg = ctx.config
    cmd = [
        sys.executable,
        "-m",
        "benchmarks._w6_child",
        "--store",
        store,
        "--turns",
        str(cfg.w6_turns),
        "--tokens",
        str(cfg.w6_tokens),
        "--interval",
        str(cfg.w6_token_interval),
        "--root",
        str(root),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = _HERE + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = await anyio.run_process(cmd, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"W6 child ({store}) exited {proc.returncode}: {proc.stderr.decode()[-2000:]}"
        )
    data: dict[str, Any] = orjson.loads(proc.stdout.splitlines()[-1])
    return data


async def run(ctx: Context) -> Result:
    """Run the W6 child for each store and tabulate."""
    cfg = ctx.config
    res = Result(
        ID,
        TITLE,
        "ms",
        extra={
            "turns": cfg.w6_turns,
            "tokens_per_turn": cfg.w6_tokens,
            "token_interval_s": cfg.w6_token_interval,
            "checkpoint_interval_s": 1.0,
        },
    )
    table = Table(
        f"{TITLE}: {size_label(cfg.w6_turns)} turns",
        [
            "system",
            "peak RSS MiB",
            "p50 ms",
            "p99 ms",
            "max ms",
            "lost tokens",
            "start s",
            "stream s",
            "checkpoints",
            "GC s (full)",
            "longest GC ms",
            "GC objects / turn",
        ],
    )
    base = [
        ("asyncio_bare", "bare", None),
        ("runtime_memory", "memory", runtime_missing("runtime") or runtime_missing("memorystore")),
        ("runtime_file", "file", runtime_missing("runtime") or runtime_missing("filestore")),
    ]
    for name, store, reason in base:
        if reason is not None:
            res.notes[name] = reason
            res.systems[name] = {"peak_rss_mib": None, "p99_ms": None}
            table.add(LABELS[name], reason.split(" (")[0])
            continue
        root = ctx.tmp / f"w6-{store}"
        root.mkdir()
        try:
            data = await _child(store, ctx, root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        peak = data["peak_rss_bytes"] / 2**20
        lost = data["tokens_expected"] - data["tokens_received"]
        res.systems[name] = {
            "peak_rss_mib": round(peak, 1),
            "p50_ms": data["p50_ms"],
            "p99_ms": data["p99_ms"],
            "max_ms": data["max_ms"],
            "lost_tokens": lost,
        }
        res.extra[name] = data
        table.add(
            LABELS[name],
            fmt(peak),
            fmt(data["p50_ms"]),
            fmt(data["p99_ms"]),
            fmt(data["max_ms"]),
            str(lost),
            fmt(data["start_s"]),
            fmt(data["stream_s"]),
            str(data["checkpoint_events"]),
            f"{fmt(data['gc']['total_ms'] / 1000)} ({data['gc']['collections'][2]})",
            fmt(data["gc"]["max_pause_ms"]),
            fmt(data["gc_tracked_per_turn"]) if "gc_tracked_per_turn" in data else "-",
        )
    table.footnotes.append(
        f"each turn: {cfg.w6_tokens} tokens {cfg.w6_token_interval} s apart + one tool call "
        f"+ reply, one subscriber per turn (a bare asyncio task, and the agent sleeps "
        f"with asyncio.sleep, as the floor's turns and subscribers do); "
        f"checkpoint_interval 1 s; nominal stream time "
        f"{cfg.w6_tokens * cfg.w6_token_interval:g} s; peak RSS = VmHWM of the child "
        "process (interpreter and imports included)"
    )
    table.footnotes.append(
        "GC s: time CPython's cyclic collector ran in the child, start to end (number of "
        "full, generation-2 collections in brackets); longest GC ms: the longest single pause"
    )
    table.footnotes.append(
        "CPython's default collector settings everywhere (neither the runtime nor the child "
        "calls gc.set_threshold); GC objects / turn: GC-tracked objects each live turn holds "
        "(its subscriber included) when all are live, counted with gc.get_objects()"
    )
    res.tables.append(table)
    return res
