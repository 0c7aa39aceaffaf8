"""W2: bytes written per W1 append.

Primary figure: ``wchar`` from ``/proc/self/io`` — bytes every thread of this process
handed to ``write()``/``pwrite()`` during the append (a whole-file rewrite counts the
whole file). Also shown: ``write_bytes`` (bytes sent to storage, whole 4 KiB pages) and
the growth of the system's files (``st_size``). The new data is the appended message
as compact JSON.
"""

from __future__ import annotations

from ._config import Context
from ._labels import size_label
from ._report import Result, Table, fmt, fmt_ratio
from ._session_pass import session_pass
from ._stats import median
from ._systems import LABELS, SESSION_SYSTEMS

ID = "W2"
TITLE = "W2 bytes written per append (median wchar bytes; x = ratio to the new data)"


async def run(ctx: Context) -> Result:
    """Build the W2 table and JSON from the W1-W3 pass."""
    sp = await session_pass(ctx)
    sizes = ctx.config.sizes
    new = sp.appended_bytes
    res = Result(ID, TITLE, "bytes", extra={"new_data_bytes": new}, notes=dict(sp.notes))
    table = Table(TITLE, ["system", *(f"N={size_label(n)}" for n in sizes)])
    pages = Table(
        "W2b bytes sent to storage per append (median write_bytes, 4 KiB pages) / file growth",
        ["system", *(f"N={size_label(n)}" for n in sizes)],
    )
    storage: dict[str, dict[str, float | None]] = {}
    growth: dict[str, dict[str, float | None]] = {}
    for name in SESSION_SYSTEMS:
        if name in sp.notes:
            res.systems[name] = {str(n): None for n in sizes}
            table.add(LABELS[name], sp.notes[name])
            pages.add(LABELS[name], sp.notes[name])
            continue
        cells = sp.cells[name]
        have_io = all(cells[n].wchar for n in sizes)
        src = {n: (cells[n].wchar if have_io else cells[n].growth) for n in sizes}
        meds = {n: median(src[n]) for n in sizes}
        res.systems[name] = {str(n): meds[n] for n in sizes}
        storage[name] = {
            str(n): (median(cells[n].write_bytes) if cells[n].write_bytes else None) for n in sizes
        }
        growth[name] = {str(n): median(cells[n].growth) for n in sizes}
        table.add(LABELS[name], *(f"{fmt(meds[n])} ({fmt_ratio(meds[n] / new)})" for n in sizes))
        pages.add(
            LABELS[name],
            *(f"{fmt(storage[name][str(n)])} / {fmt(growth[name][str(n)])}" for n in sizes),
        )
    res.extra["storage_write_bytes"] = storage
    res.extra["file_growth_bytes"] = growth
    table.footnotes.append(
        f"new data = the appended message as compact JSON: {new} bytes; wchar counts bytes "
        "handed to write()/pwrite() by every thread of the process during the append"
    )
    pages.footnotes.append(
        "write_bytes: what the kernel charged to the process for storage (page granular); "
        "growth: change of the summed st_size of the system's files (SQLite WAL files included)"
    )
    res.tables += [table, pages]
    return res
