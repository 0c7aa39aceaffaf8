"""Crash test: SIGKILL the research agent mid-turn, start again, nothing acknowledged is lost.

Runs the real CLI in a subprocess on a real FileStore, kills it with SIGKILL right
after the first ``checkpoint`` event that acknowledges a tool result, then reads the
session back with ``runtime sessions show --json`` (a new process, as after a restart).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Where does the standard library use TaskGroup?"


def _env(store: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["RUNTIME_HOME"] = str(store)
    env["RESEARCH_STEP_DELAY"] = "0.1"  # a turn of ~4 s: long enough to kill mid-turn
    return env


def _run_until_checkpoint(store: Path) -> tuple[list[dict[str, Any]], int]:
    """Start a turn, read its JSON events until the first checkpoint that acknowledges a
    tool result, SIGKILL it."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime",
            "run",
            "examples/research_agent.py:agent",
            QUESTION,
            "--json",
            "--checkpoint-interval",
            "0.2",
        ],
        cwd=ROOT,
        env=_env(store),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    events: list[dict[str, Any]] = []
    first_result = None  # seq of the first tool.completed
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            events.append(event)
            if event["type"] == "tool.completed" and first_result is None:
                first_result = event["seq"]
            # the first checkpoint that made a tool result durable (on a loaded machine
            # one may come while the first tool still runs)
            if (
                event["type"] == "checkpoint"
                and first_result is not None
                and event["data"].get("persisted_seq", 0) >= first_result
            ):
                os.kill(proc.pid, signal.SIGKILL)
                break
            assert event["type"] != "stream.end", "the turn ended before any checkpoint"
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    return events, proc.returncode


def _show(store: Path, session_id: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "runtime", "sessions", "show", session_id, "--json"],
        cwd=ROOT,
        env=_env(store),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    session: dict[str, Any] = json.loads(out.stdout)
    return session


def test_sigkill_after_first_checkpoint_loses_nothing_acknowledged(tmp_path: Path) -> None:
    store = tmp_path / "store"
    events, _ = _run_until_checkpoint(store)
    checkpoint = events[-1]
    session_id = checkpoint["session_id"]
    assert {e["session_id"] for e in events} == {session_id}
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    # a checkpoint acknowledges the events up to its persisted_seq (the agent goes on
    # emitting while the save is under way, so later events may precede its announcement)
    durable_seq = checkpoint["data"]["persisted_seq"]
    acknowledged_results = [
        e["data"]["call_id"]
        for e in events
        if e["type"] == "tool.completed" and e["seq"] <= durable_seq
    ]
    assert acknowledged_results, "the checkpoint came before any tool completed"

    session = _show(store, session_id)
    messages = session["messages"]
    assert len(messages) >= checkpoint["data"]["messages"]
    # the pending prompt is recovered, once
    assert [m for m in messages if m["role"] == "user"] == [
        {**messages[0], "role": "user", "content": QUESTION}
    ]
    # every tool result acknowledged by the checkpoint is there
    stored_results = {m.get("tool_call_id") for m in messages if m["role"] == "tool"}
    assert set(acknowledged_results) <= stored_results
    # exactly one interrupted marker, and the stream is closed
    markers = [m for m in messages if m.get("type") == "interrupted"]
    assert len(markers) == 1
    assert markers[0]["_error"] is True and markers[0]["interruption_cause"] == "process_restart"
    assert session["active_stream_id"] is None
    assert session["pending_user_message"] is None

    # a second read repairs nothing more: still exactly one marker
    again = _show(store, session_id)
    assert len([m for m in again["messages"] if m.get("type") == "interrupted"]) == 1

    # and the session can take a new turn after the crash
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime",
            "run",
            "examples/echo_agent.py:agent",
            "still there?",
            "--session",
            session_id,
            "--json",
        ],
        cwd=ROOT,
        env=_env(store),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["type"] == "stream.end"
