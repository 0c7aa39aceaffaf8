"""Each adapter without its framework: a clear ImportError naming the extra to install.

The framework's absence is simulated in a fresh interpreter (``sys.modules[name] =
None`` makes ``import name`` fail as if it were not installed).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = [
    ("runtime.adapters.pydantic_ai", "pydantic_ai", "runtime[pydantic-ai]"),
    ("runtime.adapters.langgraph", "langgraph", "runtime[langgraph]"),
    ("runtime.adapters.openai_agents", "agents", "runtime[openai-agents]"),
]


@pytest.mark.parametrize(("adapter", "framework", "extra"), CASES, ids=[c[1] for c in CASES])
def test_missing_framework_names_the_extra(adapter: str, framework: str, extra: str) -> None:
    code = (
        "import sys\n"
        f"sys.modules[{framework!r}] = None\n"
        "try:\n"
        f"    import {adapter}\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f"pip install '{extra}'" in out.stdout, out.stdout + out.stderr
