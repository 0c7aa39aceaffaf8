"""Labels shared by the tables."""

from __future__ import annotations

__all__ = ["size_label"]


def size_label(n: int) -> str:
    """``100`` -> ``"100"``, ``1000`` -> ``"1k"``, ``50000`` -> ``"50k"``."""
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)
