"""The systems the runtime is measured against, run in the same process and run.

Each peer module imports its library lazily; :func:`missing` tells whether a peer can
run here (the ``bench`` extra installs them all).
"""

from __future__ import annotations

import importlib.util

__all__ = ["NOT_INSTALLED", "missing"]

NOT_INSTALLED = "not installed"

#: peer name -> modules it needs
_REQUIRES = {
    "langgraph_sqlite": ("langgraph", "langgraph.checkpoint.sqlite", "aiosqlite"),
    "openai_sqlite": ("agents",),
    "hermes_rewrite": (),
    "jsonl_append": (),
    "jsonl_thread": (),
}


def missing(peer: str) -> str | None:
    """``None`` if ``peer`` can run, else why not (``"not installed"``).

    :raises KeyError: for an unknown peer name.
    """
    for module in _REQUIRES[peer]:
        try:
            if importlib.util.find_spec(module) is None:
                return NOT_INSTALLED
        except (ModuleNotFoundError, ValueError):  # ValueError: blocked in sys.modules
            return NOT_INSTALLED
    return None
