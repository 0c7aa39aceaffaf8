"""The public boundary: ``__all__`` is complete and sorted, and ``import runtime`` is light."""

from __future__ import annotations
import __future__

import subprocess
import sys
import types

import runtime


def test_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name, value in vars(runtime).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType | __future__._Feature)
    }
    assert runtime.__all__ == sorted(runtime.__all__)
    assert set(runtime.__all__) == public


def test_every_exported_name_resolves() -> None:
    for name in runtime.__all__:
        assert getattr(runtime, name) is not None, name


def test_import_runtime_does_not_import_optional_dependencies() -> None:
    optional = [
        "starlette",
        "sse_starlette",
        "uvicorn",
        "rich",
        "httpx",
        "fastapi",
        "redis",
        "asyncpg",
        "psycopg",
        "langgraph",
        "langchain_core",
        "agents",
        "pydantic_ai",
    ]
    code = (
        "import sys, runtime, runtime.adapters\n"
        f"loaded = [m for m in {optional!r} if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import runtime pulled in: {out.stdout.strip()}"


def test_import_runtime_agents_does_not_import_the_sdk() -> None:
    """``openai`` and ``pydantic`` load when an agent is made, not on import."""
    code = (
        "import sys, runtime.agents\n"
        "print(','.join(m for m in ('openai', 'pydantic', 'httpx') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"import runtime.agents pulled in: {out.stdout.strip()}"


def test_runtime_agents_all_is_sorted_and_resolves() -> None:
    import runtime.agents

    assert runtime.agents.__all__ == sorted(runtime.agents.__all__)
    for name in runtime.agents.__all__:
        assert getattr(runtime.agents, name) is not None, name
