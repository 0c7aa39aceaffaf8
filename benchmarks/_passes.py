"""Figures from interleaved passes: each system is measured once per pass, systems in
turn (A B C, B C A, ...), so a burst of load from another job on a shared machine
hits every system of a pass alike. A cell is the median over passes of each pass's
median, with its spread; a ratio is computed pass by pass (system / baseline of the
same pass) and then summarised the same way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from ._report import fmt, fmt_ratio
from ._stats import median

__all__ = [
    "NOISY",
    "Spread",
    "fmt_spread",
    "over_passes",
    "pass_medians",
    "ratio_by_pass",
    "rotated",
    "spread_note",
]

#: A cell whose spread exceeds this fraction is flagged as noisy.
NOISY = 0.20

T = TypeVar("T")


@dataclass(frozen=True)
class Spread:
    """A figure over passes.

    :ivar median: median of the per-pass medians.
    :ivar spread: ``(max - min) / median`` of the per-pass medians (0.12 = 12 %).
    :ivar passes: how many passes it summarises.
    """

    median: float
    spread: float
    passes: int

    @property
    def noisy(self) -> bool:
        """Whether the spread exceeds :data:`NOISY`."""
        return self.spread > NOISY

    def to_json(self) -> dict[str, float | int]:
        return {
            "median": round(self.median, 4),
            "spread": round(self.spread, 4),
            "passes": self.passes,
        }


def over_passes(per_pass: Sequence[float]) -> Spread:
    """Summarise one value per pass.

    :raises ValueError: if ``per_pass`` is empty.
    """
    mid = median(per_pass)
    spread = (max(per_pass) - min(per_pass)) / mid if mid else 0.0
    return Spread(mid, spread, len(per_pass))


def pass_medians(samples: Sequence[Sequence[float]]) -> list[float]:
    """The median of each pass's samples (passes without samples are skipped)."""
    return [median(p) for p in samples if p]


def ratio_by_pass(system: Sequence[Sequence[float]], baseline: Sequence[Sequence[float]]) -> Spread:
    """``system / baseline`` pass by pass (each pass's median over the baseline's
    median of the same pass), summarised over passes.

    :raises ValueError: if the two have a different number of passes or none.
    """
    if len(system) != len(baseline):
        raise ValueError(f"{len(system)} passes against {len(baseline)} baseline passes")
    return over_passes([median(s) / median(b) for s, b in zip(system, baseline, strict=True)])


def rotated(items: Sequence[T], k: int) -> list[T]:
    """``items`` rotated left by ``k``: pass ``k``'s order of the systems."""
    if not items:
        return []
    k %= len(items)
    return [*items[k:], *items[:k]]


def fmt_spread(value: Spread, *, ratio: bool = False) -> str:
    """``0.236 ~12%`` (``1.70x ~8%`` for a ratio), with ``!`` after a noisy spread."""
    text = fmt_ratio(value.median) if ratio else fmt(value.median)
    if value.passes < 2:
        return text
    return f"{text} ~{value.spread * 100:.0f}%" + ("!" if value.noisy else "")


def spread_note(passes: int) -> str:
    """The footnote explaining :func:`fmt_spread`."""
    return (
        f"median over {passes} interleaved passes of each pass's median; ~N% = spread, "
        f"(max - min) / median of the per-pass figures; ! marks a spread above "
        f"{NOISY * 100:.0f}% (a noisy cell: trust its ratio, computed pass by pass, more "
        "than its absolute time)"
    )
