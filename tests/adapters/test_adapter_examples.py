"""Smoke test: each adapter example runs offline through the ``runtime run`` CLI (a real
subprocess on a real FileStore), makes its real tool call and keeps two turns apart.

The examples' models are each framework's own scripted model (a stand-in for a paid
model API); their tool reads the interpreter's standard-library module names.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _support import ROOT, env, require, show

EXAMPLES = [
    ("examples/pydantic_ai_agent.py", "pydantic_ai", "pydantic-ai"),
    ("examples/langgraph_agent.py", "langgraph", "langgraph"),
    ("examples/openai_agents_agent.py", "agents", "openai-agents"),
]


def run(agent: str, prompt: str, store: Path, *more: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "runtime", "run", agent, prompt, "--json", *more],
        cwd=ROOT,
        env=env(store),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.parametrize(("path", "module", "extra"), EXAMPLES, ids=[e[1] for e in EXAMPLES])
def test_example_runs_through_the_cli_with_a_tool_call(
    path: str, module: str, extra: str, tmp_path: Path
) -> None:
    require(module, extra)
    events = run(f"{path}:agent", "Which modules mention xml?", tmp_path)
    types = [e["type"] for e in events]
    assert types[0] == "stream.started" and types[-2:] == ["done", "stream.end"]
    (started,) = [e["data"] for e in events if e["type"] == "tool.started"]
    (completed,) = [e["data"] for e in events if e["type"] == "tool.completed"]
    assert started["name"] == "find_modules" and started["arguments"] == {"word": "xml"}
    assert completed["call_id"] == started["call_id"] and completed["error"] is None
    assert "xmlrpc" in completed["result"]
    answer = "".join(e["data"]["text"] for e in events if e["type"] == "token")
    assert answer == "Standard-library modules whose name contains 'xml': xml, xmlrpc."

    session_id = events[0]["session_id"]
    second = run(f"{path}:agent", "And json?", tmp_path, "--session", session_id)
    assert [e["type"] for e in second][-2:] == ["done", "stream.end"]
    messages = show(tmp_path, session_id)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"] * 2
    assert messages[1]["tool_calls"][0]["id"] == started["call_id"]
    assert "'json': _json, json." in messages[-1]["content"]
