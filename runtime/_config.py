"""Where things live by default."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_root"]


def default_root() -> Path:
    """The store root: ``$RUNTIME_HOME`` if set and non-empty, else ``./.runtime``.

    A FileStore keeps session files under ``<root>/sessions/``; the gateway route
    table is ``<root>/routes.json``.
    """
    home = os.environ.get("RUNTIME_HOME")
    return Path(home) if home else Path(".runtime")
