"""Shared by the adapter tests: the framework guard, one turn, and the SIGKILL run.

Not a test module (no ``test_`` prefix).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from runtime import Event, Runtime

ROOT = Path(__file__).resolve().parents[2]  # the checkout: runtime/, examples/, tests/
HERE = Path(__file__).resolve().parent
INTERVAL = 0.05

#: What every crash agent looks up first (a real tool result the checkpoint must keep)
#: before its second tool waits until the process is killed.
CRASH_PROMPT = "Where is TaskGroup defined?"
LOOKUP_ID = "call_lookup_1"
LOOKUP_RESULT = "asyncio.taskgroups"
WAIT_ID = "call_wait_2"


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or skip the calling test module when it is not installed
    (outside CI; in CI, whose test extra installs every framework, it must import)."""
    if os.environ.get("CI") == "true":
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"needs {module}: pip install 'runtime[{extra}]'")


async def run_turn(rt: Runtime, session_id: str, text: str) -> list[Event]:
    """Start a turn and follow its events to ``stream.end``."""
    stream_id = await rt.start_turn(session_id, text)
    with anyio.fail_after(30):
        return [e async for e in rt.events(stream_id)]


def of_type(events: list[Event], type: str) -> list[dict[str, Any]]:
    """The data of the events of one type, in order."""
    return [e.data for e in events if e.type == type]


def env(store: Path) -> dict[str, str]:
    environ = dict(os.environ)
    environ["PYTHONPATH"] = str(ROOT) + os.pathsep + environ.get("PYTHONPATH", "")
    environ["RUNTIME_HOME"] = str(store)
    return environ


def run_until_lookup_is_checkpointed(agent: str, store: Path) -> list[dict[str, Any]]:
    """``runtime run AGENT CRASH_PROMPT --json`` in a subprocess, SIGKILLed as soon as a
    checkpoint has made the lookup tool's result durable; returns the events read."""
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "runtime", "run", agent, CRASH_PROMPT),
            *("--json", "--checkpoint-interval", "0.1"),
        ],
        cwd=ROOT,
        env=env(store),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    events: list[dict[str, Any]] = []
    lookup_seq: int | None = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            events.append(event)
            if event["type"] == "tool.completed" and event["data"]["call_id"] == LOOKUP_ID:
                lookup_seq = event["seq"]
            if (
                event["type"] == "checkpoint"
                and lookup_seq is not None
                and event["data"]["persisted_seq"] >= lookup_seq
            ):
                os.kill(proc.pid, signal.SIGKILL)
                break
            assert event["type"] != "stream.end", f"the turn ended: {events}"
    finally:
        proc.kill()
        proc.wait(timeout=30)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == -signal.SIGKILL, stderr
    return events


def show(store: Path, session_id: str) -> dict[str, Any]:
    """``runtime sessions show ID --json`` in a new process (as after a restart)."""
    out = subprocess.run(
        [sys.executable, "-m", "runtime", "sessions", "show", session_id, "--json"],
        cwd=ROOT,
        env=env(store),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    session: dict[str, Any] = json.loads(out.stdout)
    return session


def check_crash_recovery(agent: str, store: Path) -> None:
    """SIGKILL mid-turn, then read the session as a new process would: the prompt once,
    the checkpointed lookup (call with the model's id, and its result), exactly one
    interrupted marker, no pending stream; a second read repairs nothing more."""
    events = run_until_lookup_is_checkpointed(agent, store)
    session_id = events[0]["session_id"]
    started = [e["data"]["call_id"] for e in events if e["type"] == "tool.started"]
    assert started[0] == LOOKUP_ID
    session = show(store, session_id)
    messages = session["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == [CRASH_PROMPT]
    calls = [c["id"] for m in messages for c in m.get("tool_calls") or ()]
    assert LOOKUP_ID in calls
    results = [m for m in messages if m["role"] == "tool" and m["tool_call_id"] == LOOKUP_ID]
    assert len(results) == 1 and LOOKUP_RESULT in results[0]["content"]
    markers = [m for m in messages if m.get("type") == "interrupted"]
    assert len(markers) == 1 and markers[0]["_error"] is True
    assert session["active_stream_id"] is None and session["pending_user_message"] is None
    again = show(store, session_id)
    assert len([m for m in again["messages"] if m.get("type") == "interrupted"]) == 1
