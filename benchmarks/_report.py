"""Result objects, and their rendering as tables (rich if installed, else plain text)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Result", "Table", "fmt", "fmt_ratio", "render"]


def fmt(value: float | None, digits: int = 3) -> str:
    """A number for a table cell: about ``digits`` significant figures; ``-`` for None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if value == 0:
        return "0"
    mag = abs(value)
    if mag >= 10**digits:
        return f"{value:,.0f}"
    decimals = max(0, digits - 1 - math.floor(math.log10(mag)))
    return f"{value:.{decimals}f}"


def fmt_ratio(value: float | None) -> str:
    """A ratio for a table cell, such as ``3.2x``; ``-`` for None."""
    return "-" if value is None else f"{fmt(value, 3)}x"


@dataclass
class Table:
    """One printed table: a title, column headers, rows of cell strings, footnotes."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    footnotes: list[str] = field(default_factory=list)

    def add(self, *cells: str) -> None:
        """Append a row; missing trailing cells are left blank."""
        row = list(cells) + [""] * (len(self.columns) - len(cells))
        self.rows.append(row)

    def plain(self) -> str:
        """The table as aligned plain text (also used for docs/benchmarks.md code blocks)."""
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
        out = io.StringIO()
        out.write(f"{self.title}\n")
        line = "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(self.columns, widths, strict=True))
        )
        out.write(line + "\n" + "-" * len(line) + "\n")
        for row in self.rows:
            out.write(
                "  ".join(
                    c.ljust(w) if i == 0 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(row, widths, strict=True))
                )
                + "\n"
            )
        for note in self.footnotes:
            out.write(f"  * {note}\n")
        return out.getvalue()

    def markdown(self) -> str:
        """The table as GitHub markdown, footnotes as a list below it."""
        out = io.StringIO()
        out.write(f"**{self.title}**\n\n")
        out.write("| " + " | ".join(self.columns) + " |\n")
        out.write("|" + "|".join("---" for _ in self.columns) + "|\n")
        for row in self.rows:
            out.write("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |\n")
        if self.footnotes:
            out.write("\n")
            for note in self.footnotes:
                out.write(f"- {note}\n")
        return out.getvalue()


@dataclass
class Result:
    """What one workload measured.

    ``systems`` maps a system name to ``{N or S (as a string) or a metric name: value}``
    (``None`` where nothing was measured); ``extra`` holds workload-level figures such
    as ``floor_ms`` and goes into the JSON beside ``unit``; ``notes`` says why a system
    has no figures ("not installed", …).
    """

    wid: str
    title: str
    unit: str
    systems: dict[str, dict[str, float | None]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this workload: ``{"unit", **extra, "systems", "notes"}``."""
        data: dict[str, Any] = {"unit": self.unit, **self.extra, "systems": self.systems}
        if self.notes:
            data["notes"] = self.notes
        data["seconds"] = round(self.seconds, 3)
        return data


def render(table: Table) -> None:
    """Print ``table`` with rich when it is installed, else as plain text."""
    try:
        from rich import box
        from rich.console import Console
        from rich.table import Table as RichTable
    except ImportError:
        print(table.plain())
        return
    rt = RichTable(title=table.title, box=box.SIMPLE_HEAVY, title_justify="left")
    for i, col in enumerate(table.columns):
        rt.add_column(col, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in table.rows:
        rt.add_row(*row)
    if table.footnotes:
        rt.caption = "\n".join(f"* {n}" for n in table.footnotes)
        rt.caption_justify = "left"
    Console(width=180).print(rt)
