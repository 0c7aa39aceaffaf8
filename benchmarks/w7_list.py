"""W7: list sessions from a store holding S sessions: ms for the first page of 50, and
ms for all of them.

Runtime: ``FileStore.list_sessions(limit=50)`` on a store opened afresh (the first
call is reported separately as "cold"), and a walk over every page with
``next_cursor``. hermes-webui baseline: parse ``_index.json``, sort, slice (its list
call returns every row at once, so "all" is one such call).
"""

from __future__ import annotations

from typing import Any

from ._config import Context
from ._labels import size_label
from ._passes import fmt_spread, over_passes
from ._populate import hermes_store, runtime_store
from ._report import Result, Table, fmt
from ._rt import runtime_missing
from ._stats import median, now_ms
from .peers.hermes import list_page

ID = "W7"
TITLE = "W7 list sessions (median ms)"
PAGE = 50


async def _runtime(ctx: Context, s: int) -> dict[str, Any]:
    from runtime.stores.files import FileStore

    root = await runtime_store(ctx, s)
    opens = []
    for _ in range(ctx.config.list_reps - 1):  # opened and closed again: only timed
        t0 = now_ms()
        async with FileStore(root):
            opens.append(now_ms() - t0)
    t0 = now_ms()
    store = FileStore(root)
    await store.open()
    try:
        opens.append(now_ms() - t0)
        open_ms = over_passes(opens)
        t0 = now_ms()
        page = await store.list_sessions(limit=PAGE)
        cold = now_ms() - t0
        if len(page.sessions) != min(PAGE, s):
            raise RuntimeError(f"first page has {len(page.sessions)} sessions, expected {PAGE}")
        first = []
        for _ in range(ctx.config.list_reps):
            t0 = now_ms()
            await store.list_sessions(limit=PAGE)
            first.append(now_ms() - t0)
        all_ms = []
        for _ in range(1 if s > 10_000 else ctx.config.list_reps):
            t0 = now_ms()
            seen, cursor = 0, None
            while True:
                page = await store.list_sessions(limit=PAGE, cursor=cursor)
                seen += len(page.sessions)
                cursor = page.next_cursor
                if cursor is None:
                    break
            all_ms.append(now_ms() - t0)
            if seen != s:
                raise RuntimeError(f"listing all pages gave {seen} sessions, expected {s}")
    finally:
        await store.aclose()
    return {
        "open_ms": open_ms,
        "cold_ms": cold,
        "first_ms": median(first),
        "all_ms": median(all_ms),
    }


async def _hermes(ctx: Context, s: int) -> dict[str, float]:
    directory = await hermes_store(ctx, s)
    first, every = [], []
    for _ in range(ctx.config.list_reps):
        t0 = now_ms()
        list_page(directory, 0, PAGE)
        first.append(now_ms() - t0)
        t0 = now_ms()
        rows = list_page(directory, 0, s)
        every.append(now_ms() - t0)
        if len(rows) != s:
            raise RuntimeError(f"hermes index has {len(rows)} rows, expected {s}")
    return {"first_ms": median(first), "all_ms": median(every)}


async def run(ctx: Context) -> Result:
    """Populate (or reuse) the stores and time the listings."""
    sizes = ctx.config.store_sizes
    res = Result(ID, TITLE, "ms")
    cols = ["system"]
    for s in sizes:
        cols += [f"S={size_label(s)} page", f"S={size_label(s)} all"]
    table = Table(TITLE, cols)
    reason = runtime_missing("filestore")
    if reason is not None:
        res.notes["runtime"] = reason
        for key in ("runtime_first_page", "runtime_all"):
            res.systems[key] = {str(s): None for s in sizes}
        table.add("runtime FileStore", reason.split(" (")[0])
    else:
        runs = {s: await _runtime(ctx, s) for s in sizes}
        res.systems["runtime_first_page"] = {str(s): round(runs[s]["first_ms"], 4) for s in sizes}
        res.systems["runtime_all"] = {str(s): round(runs[s]["all_ms"], 3) for s in sizes}
        res.extra["runtime_open_ms"] = {str(s): round(runs[s]["open_ms"].median, 3) for s in sizes}
        res.extra["runtime_open_spread"] = {str(s): runs[s]["open_ms"].to_json() for s in sizes}
        res.extra["runtime_cold_first_page_ms"] = {
            str(s): round(runs[s]["cold_ms"], 3) for s in sizes
        }
        cells = []
        for s in sizes:
            cells += [fmt(runs[s]["first_ms"]), fmt(runs[s]["all_ms"])]
        table.add(f"runtime FileStore (pages of {PAGE})", *cells)
        table.footnotes.append(
            f"runtime store opened afresh ({ctx.config.list_reps} times, median ~spread): open() "
            + ", ".join(f"{fmt_spread(runs[s]['open_ms'])} ms at S={size_label(s)}" for s in sizes)
            + "; first list call after open "
            + ", ".join(f"{fmt(runs[s]['cold_ms'])} ms" for s in sizes)
        )
    hermes = {s: await _hermes(ctx, s) for s in sizes}
    res.systems["hermes_index_first_page"] = {
        str(s): round(hermes[s]["first_ms"], 4) for s in sizes
    }
    res.systems["hermes_index_all"] = {str(s): round(hermes[s]["all_ms"], 3) for s in sizes}
    cells = []
    for s in sizes:
        cells += [fmt(hermes[s]["first_ms"]), fmt(hermes[s]["all_ms"])]
    table.add("hermes-webui _index.json (parse, sort, slice)", *cells)
    table.footnotes.append(
        f"median of {ctx.config.list_reps} calls (all pages: 1 walk when S > 10k); each "
        "session holds 3 messages"
    )
    res.tables.append(table)
    return res
