"""W3: full session load at N messages; ratio to ``orjson.loads`` of one file holding
the same messages (read + parse), measured in the same pass and taken pass by pass."""

from __future__ import annotations

from ._config import Context
from ._labels import size_label
from ._passes import fmt_spread, over_passes, pass_medians, ratio_by_pass, spread_note
from ._report import Result, Table
from ._session_pass import session_pass
from ._systems import LABELS, SESSION_SYSTEMS

ID = "W3"
TITLE = (
    "W3 full session load (median ms ~spread; x = ratio to orjson.loads of the same "
    "messages, pass by pass)"
)


async def run(ctx: Context) -> Result:
    """Build the W3 table and JSON from the W1-W3 pass."""
    sp = await session_pass(ctx)
    sizes = ctx.config.sizes
    base = {n: over_passes(pass_medians(sp.orjson_ms[n])) for n in sizes}
    res = Result(ID, TITLE, "ms", notes=dict(sp.notes))
    res.systems["orjson_loads"] = {str(n): round(b.median, 4) for n, b in base.items()}
    spreads: dict[str, dict[str, object]] = {
        "orjson_loads": {str(n): b.to_json() for n, b in base.items()}
    }
    ratios: dict[str, dict[str, object]] = {}
    table = Table(TITLE, ["system", *(f"N={size_label(n)}" for n in sizes)])
    table.add(LABELS["orjson_loads"], *(fmt_spread(base[n]) for n in sizes))
    for name in SESSION_SYSTEMS:
        if name in sp.notes:
            res.systems[name] = {str(n): None for n in sizes}
            table.add(LABELS[name], sp.notes[name])
            continue
        cells = sp.cells[name]
        figs = {n: over_passes(pass_medians(cells[n].load_ms)) for n in sizes}
        rat = {n: ratio_by_pass(cells[n].load_ms, sp.orjson_ms[n]) for n in sizes}
        res.systems[name] = {str(n): round(f.median, 4) for n, f in figs.items()}
        spreads[name] = {str(n): f.to_json() for n, f in figs.items()}
        ratios[name] = {str(n): r.to_json() for n, r in rat.items()}
        table.add(
            LABELS[name],
            *(f"{fmt_spread(figs[n])} ({fmt_spread(rat[n], ratio=True)})" for n in sizes),
        )
    res.extra["spread"] = spreads
    res.extra["ratio_to_orjson"] = ratios
    res.extra["passes"] = sp.passes
    table.footnotes.append(spread_note(sp.passes))
    table.footnotes.append(
        f"{ctx.config.load_reps} loads per cell and pass, after that pass's W1 appends; each "
        "pass reopens the system first (the runtime: a fresh FileStore instance, whose "
        "first, untimed load may schedule the compaction of a long journal in the "
        "background; it runs after the timed loads, untimed, before the next system's "
        "turn); gc.collect() before every load"
    )
    res.tables.append(table)
    return res
