"""W1: a session with N persisted messages; append ONE message and make it durable.

Median ms over the timed appends; ratio to N=100; ratio to a bare 1-byte
write+fsync measured in the same run (the floor).
"""

from __future__ import annotations

from ._config import Context
from ._labels import size_label
from ._report import Result, Table, fmt, fmt_ratio
from ._session_pass import session_pass
from ._stats import median
from ._systems import LABELS, SESSION_SYSTEMS

ID = "W1"
TITLE = "W1 append one message + durable checkpoint (median ms; x = ratio to the fsync floor)"


async def run(ctx: Context) -> Result:
    """Measure (or reuse) the W1-W3 pass and build the W1 table and JSON."""
    sp = await session_pass(ctx)
    sizes = ctx.config.sizes
    floor = median(sp.floor_ms)
    res = Result(ID, TITLE, "ms", extra={"floor_ms": round(floor, 4)}, notes=dict(sp.notes))
    first, last = sizes[0], sizes[-1]
    cols = [
        "system",
        *(f"N={size_label(n)}" for n in sizes),
        f"{size_label(last)}/{size_label(first)}",
    ]
    table = Table(TITLE, cols)
    table.add("bare 1-byte write + fsync (floor)", fmt(floor), *([""] * len(sizes)))
    for name in SESSION_SYSTEMS:
        if name in sp.notes:
            res.systems[name] = {str(n): None for n in sizes}
            table.add(LABELS[name], *([sp.notes[name]] + [""] * len(sizes)))
            continue
        meds = {n: median(sp.cells[name][n].append_ms) for n in sizes}
        res.systems[name] = {str(n): round(v, 4) for n, v in meds.items()}
        table.add(
            LABELS[name],
            *(f"{fmt(meds[n])} ({fmt_ratio(meds[n] / floor)})" for n in sizes),
            fmt_ratio(meds[last] / meds[first]),
        )
    res.extra["reps"] = {
        name: {str(n): r for n, r in by_n.items()} for name, by_n in sp.reps.items()
    }
    table.footnotes.append(
        f"floor: median of {len(sp.floor_ms)} 1-byte O_APPEND writes + fsync, taken before "
        "and after W1-W3 on the same file system"
    )
    reps_note = ", ".join(
        f"{size_label(n)}: {r}"
        for n, r in sp.reps.get("langgraph_sqlite", {}).items()
        if r != ctx.config.append_reps
    )
    table.footnotes.append(
        f"{ctx.config.append_reps} timed appends per cell after {ctx.config.warmup} untimed"
        + (
            f"; LangGraph capped to fewer appends ({reps_note}): each one rewrites the whole "
            "history into SQLite"
            if reps_note
            else ""
        )
    )
    res.tables.append(table)
    return res
