"""W3: full session load at N messages; ratio to ``orjson.loads`` of one file holding
the same messages (read + parse), measured in the same run."""

from __future__ import annotations

from ._config import Context
from ._labels import size_label
from ._report import Result, Table, fmt, fmt_ratio
from ._session_pass import session_pass
from ._stats import median
from ._systems import LABELS, SESSION_SYSTEMS

ID = "W3"
TITLE = "W3 full session load (median ms; x = ratio to orjson.loads of the same messages)"


async def run(ctx: Context) -> Result:
    """Build the W3 table and JSON from the W1-W3 pass."""
    sp = await session_pass(ctx)
    sizes = ctx.config.sizes
    base = {n: median(sp.orjson_ms[n]) for n in sizes}
    res = Result(ID, TITLE, "ms", notes=dict(sp.notes))
    res.systems["orjson_loads"] = {str(n): round(v, 4) for n, v in base.items()}
    table = Table(TITLE, ["system", *(f"N={size_label(n)}" for n in sizes)])
    table.add(LABELS["orjson_loads"], *(fmt(base[n]) for n in sizes))
    for name in SESSION_SYSTEMS:
        if name in sp.notes:
            res.systems[name] = {str(n): None for n in sizes}
            table.add(LABELS[name], sp.notes[name])
            continue
        meds = {n: median(sp.cells[name][n].load_ms) for n in sizes}
        res.systems[name] = {str(n): round(v, 4) for n, v in meds.items()}
        cells = (f"{fmt(meds[n])} ({fmt_ratio(meds[n] / base[n])})" for n in sizes)
        table.add(LABELS[name], *cells)
    table.footnotes.append(
        f"{ctx.config.load_reps} loads per cell after the W1 appends (N + "
        f"{ctx.config.warmup + ctx.config.append_reps} messages; LangGraph fewer at capped N); "
        "the runtime loads through a fresh FileStore instance"
    )
    res.tables.append(table)
    return res
