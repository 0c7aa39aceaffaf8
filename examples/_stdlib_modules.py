"""The tool the adapter examples share, and the little their scripted models need.

``find_modules`` is a real tool: it reads the names of the running interpreter's
standard-library modules (``sys.stdlib_module_names``).
"""

from __future__ import annotations

import re
import sys


def find_modules(word: str) -> str:
    """Standard-library modules whose name contains ``word`` (case-insensitive),
    comma-separated and sorted; ``"none"`` when there is none."""
    needle = word.lower()
    names = sorted(name for name in sys.stdlib_module_names if needle in name.lower())
    return ", ".join(names) or "none"


def keyword(prompt: str) -> str:
    """The word a scripted model looks up: the prompt's last word ("xml" in "Which
    modules mention xml?"), or ``"io"`` for a prompt without one."""
    words = re.findall(r"[A-Za-z_]+", prompt)
    return words[-1] if words else "io"


def answer(word: str, modules: str) -> list[str]:
    """A scripted model's final answer, in the pieces it streams."""
    return [f"Standard-library modules whose name contains {word!r}: ", modules, "."]
