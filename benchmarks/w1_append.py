"""W1: a session with N persisted messages; append ONE message and make it durable.

Per cell: the median over interleaved passes of each pass's median (ms) with its
spread, and the ratio to a bare 1-byte write+fsync (the floor) taken pass by pass
against the floor measured in the same pass; the last column is N=last / N=first.
"""

from __future__ import annotations

from ._config import Context
from ._labels import size_label
from ._passes import fmt_spread, over_passes, pass_medians, ratio_by_pass, spread_note
from ._report import Result, Table
from ._session_pass import session_pass
from ._systems import LABELS, SESSION_SYSTEMS

ID = "W1"
TITLE = (
    "W1 append one message + durable checkpoint (median ms ~spread; x = ratio to the fsync "
    "floor, pass by pass)"
)


async def run(ctx: Context) -> Result:
    """Measure (or reuse) the W1-W3 pass and build the W1 table and JSON."""
    sp = await session_pass(ctx)
    sizes = ctx.config.sizes
    first, last = sizes[0], sizes[-1]
    floors = {n: over_passes(pass_medians(sp.floor_ms[n])) for n in sizes}
    all_floor = over_passes([f.median for f in floors.values()])
    res = Result(
        ID, TITLE, "ms", extra={"floor_ms": round(all_floor.median, 4)}, notes=dict(sp.notes)
    )
    res.extra["floor_by_n"] = {str(n): f.to_json() for n, f in floors.items()}
    cols = [
        "system",
        *(f"N={size_label(n)}" for n in sizes),
        f"{size_label(last)}/{size_label(first)}",
    ]
    table = Table(TITLE, cols)
    table.add("bare 1-byte write + fsync (floor)", *(fmt_spread(floors[n]) for n in sizes))
    spreads: dict[str, dict[str, object]] = {}
    ratios: dict[str, dict[str, object]] = {}
    for name in SESSION_SYSTEMS:
        if name in sp.notes:
            res.systems[name] = {str(n): None for n in sizes}
            table.add(LABELS[name], *([sp.notes[name]] + [""] * len(sizes)))
            continue
        cells = sp.cells[name]
        figs = {n: over_passes(pass_medians(cells[n].append_ms)) for n in sizes}
        rat = {n: ratio_by_pass(cells[n].append_ms, sp.floor_ms[n]) for n in sizes}
        growth = ratio_by_pass(cells[last].append_ms, cells[first].append_ms)
        res.systems[name] = {str(n): round(f.median, 4) for n, f in figs.items()}
        spreads[name] = {str(n): f.to_json() for n, f in figs.items()}
        ratios[name] = {str(n): r.to_json() for n, r in rat.items()}
        ratios[name][f"{last}/{first}"] = growth.to_json()
        table.add(
            LABELS[name],
            *(f"{fmt_spread(figs[n])} ({fmt_spread(rat[n], ratio=True)})" for n in sizes),
            fmt_spread(growth, ratio=True),
        )
    res.extra["spread"] = spreads
    res.extra["ratio_to_floor"] = ratios
    res.extra["passes"] = sp.passes
    res.extra["reps"] = {
        name: {str(n): r for n, r in by_n.items()} for name, by_n in sp.reps.items()
    }
    table.footnotes.append(spread_note(sp.passes))
    table.footnotes.append(
        f"floor: {ctx.config.floor_reps} 1-byte O_APPEND writes + fsync per pass, on the same "
        "file system, just before that pass's systems, each timed between the same "
        "bookkeeping as a system's append"
    )
    reps_note = ", ".join(
        f"{size_label(n)}: {ctx.config.langgraph_reps(n)}"
        for n in sizes
        if ctx.config.langgraph_reps(n) != ctx.config.append_reps
    )
    table.footnotes.append(
        f"{ctx.config.append_reps} timed appends per cell and pass after {ctx.config.warmup} "
        "untimed; the last column divides the largest N by the smallest, pass by pass"
        + (
            f"; LangGraph capped per pass ({reps_note}): each append rewrites the whole "
            "history into SQLite"
            if reps_note
            else ""
        )
    )
    res.tables.append(table)
    return res
