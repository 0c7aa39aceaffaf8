"""Durable resume with real processes: SIGKILL a turn, restart with ``resume="auto"``.

Every process here is a real ``runtime`` process on a real FileStore; a crash is a
SIGKILL; what a tool really did is counted in a file each execution appends to
(``O_APPEND`` + ``fsync``). Nothing is faked.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .helpers import (
    ROOT,
    comparable,
    env,
    finish,
    first_event,
    kill,
    lines,
    start_restart,
    start_run,
    wait_for_lines,
)

RESEARCH = "examples/research_agent.py:agent"
STEPS = "tests/resume/agents.py:steps"
CHARGE = "tests/resume/agents.py:charge"
QUESTION = "Where is `Widget` used?"


def _corpus(root: Path) -> Path:
    """19 packages that all use ``Widget``: list_packages, 19 searches, a count, 8
    read_region calls and an aggregate make a 30-tool research turn."""
    for i in range(19):
        pkg = root / f"pkg{i:02d}"
        pkg.mkdir(parents=True)
        body = "class Widget:\n    pass\n" if i % 3 == 0 else "from x import Widget\n"
        (pkg / "mod.py").write_text(
            f'"""Package {i}."""\n\n{body}\n\ndef use():\n    return Widget()\n'
        )
    return root


def _show(store: Path, session_id: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime",
            "sessions",
            "show",
            session_id,
            "--json",
            "--store",
            str(store),
        ],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    session: dict[str, Any] = json.loads(out.stdout)
    return session


def _uninterrupted(tmp: Path, agent: str, prompt: str, environ: dict[str, str]) -> dict[str, Any]:
    store = tmp / "reference"
    proc = start_run(store, agent, prompt, environ)
    session_id = first_event(proc)["session_id"]
    proc.communicate(timeout=300)
    assert proc.returncode == 0
    return _show(store, session_id)


def test_research_turn_killed_at_a_random_step_completes_with_each_tool_run_once(
    tmp_path: Path,
) -> None:
    corpus = _corpus(tmp_path / "corpus")
    reference_log = tmp_path / "reference.log"
    reference = _uninterrupted(
        tmp_path,
        RESEARCH,
        QUESTION,
        env(RESEARCH_CORPUS=str(corpus), RESEARCH_TOOL_LOG=str(reference_log)),
    )
    assert len(lines(reference_log)) == 30  # a 30-tool turn

    log = tmp_path / "tools.log"
    environ = env(
        RESEARCH_CORPUS=str(corpus), RESEARCH_TOOL_LOG=str(log), RESEARCH_STEP_DELAY="0.5"
    )
    store = tmp_path / "store"
    step = random.Random().randint(2, 27)
    proc = start_run(store, RESEARCH, QUESTION, environ)
    session_id = first_event(proc)["session_id"]
    wait_for_lines(log, step, proc)
    time.sleep(0.15)  # in the pause after the step: its result is recorded
    kill(proc)
    assert len(lines(log)) == step

    session = finish(start_restart(store, RESEARCH, session_id, environ))
    ran = lines(log)
    assert sorted(ran) == sorted(lines(reference_log)), f"killed after step {step}"
    assert len(set(ran)) == 30  # each tool call ran exactly once
    assert session["active_stream_id"] is None
    assert comparable(session["messages"]) == comparable(reference["messages"])
    assert session["metadata"] == reference["metadata"] == {}


def test_non_idempotent_tool_killed_mid_call_is_not_run_again(tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    environ = env(RESUME_SIDE_EFFECTS=str(effects))
    store = tmp_path / "store"
    proc = start_run(store, CHARGE, "charge me", environ)
    session_id = first_event(proc)["session_id"]
    wait_for_lines(effects, 1, proc)  # the charge took effect; its call hangs
    kill(proc)

    session = finish(start_restart(store, CHARGE, session_id, environ))
    assert lines(effects) == ["charge"]  # not run again
    messages = session["messages"]
    result = next(m for m in messages if m["role"] == "tool")
    unknown = json.loads(result["content"])
    assert unknown["status"] == "outcome_unknown"
    assert unknown["call_id"] == "charge-1" and unknown["tool"] == "charge"
    assert isinstance(unknown["started_at"], float)
    assert messages[-1]["content"] == "charge: outcome_unknown; attempt 1"
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]


def test_three_crashes_in_a_row_end_resume_exhausted_with_nothing_lost(tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    environ = env(RESUME_SIDE_EFFECTS=str(effects), RESUME_STEPS="30", RESUME_STEP_DELAY="0.3")
    store = tmp_path / "store"
    proc = start_run(store, STEPS, "count", environ)
    session_id = first_event(proc)["session_id"]
    done = 3
    wait_for_lines(effects, done, proc)
    time.sleep(0.1)
    kill(proc)  # crash 1: the first run
    for _ in range(2):  # crashes 2 and 3: resumes 1 and 2 (max_resume_attempts=2)
        proc = start_restart(store, STEPS, session_id, environ, attempts=2)
        done += 3
        wait_for_lines(effects, done, proc)
        time.sleep(0.1)
        kill(proc)

    session = finish(start_restart(store, STEPS, session_id, environ, attempts=2))
    ran = lines(effects)
    assert ran == [f"step-{i}" for i in range(1, done + 1)]  # each at most once, in order
    messages = session["messages"]
    marker = messages[-1]
    assert marker["type"] == "resume_exhausted" and marker["_error"] is True
    assert marker["resume_attempts"] == 2
    # nothing lost: every call that ran has its result, folded from the tool ledger
    results = {m["tool_call_id"]: json.loads(m["content"]) for m in messages if m["role"] == "tool"}
    assert results == {f"step-{i}": {"step": i, "square": i * i} for i in range(1, done + 1)}
    assert session["active_stream_id"] is None and "runtime.resume" not in session["metadata"]
