"""OpenAI Agents SDK: ``SQLiteSession`` on a database file, ``add_items`` / ``get_items``.

Imported lazily: the module loads without the ``bench`` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["OpenAISession"]


class OpenAISession:
    """One ``agents.SQLiteSession`` on ``db_path``."""

    def __init__(self, db_path: Path, session_id: str = "bench") -> None:
        from agents import SQLiteSession

        self._session: Any = SQLiteSession(session_id, db_path)

    async def append(self, items: list[dict[str, Any]]) -> None:
        """``add_items(items)``: one transaction, committed when it returns."""
        await self._session.add_items(items)

    async def load(self) -> list[dict[str, Any]]:
        """``get_items()``: every item of the session."""
        items: list[dict[str, Any]] = await self._session.get_items()
        return items

    def close(self) -> None:
        """Close the session's connections."""
        self._session.close()
