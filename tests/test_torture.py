"""Crash torture (``python -m runtime.torture``): real child processes on a real
FileStore, killed with SIGKILL at random instants and at named I/O steps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from runtime.stores import faults
from runtime.torture import Observed, reopen_and_check, run_trial, run_trials

ROOT = Path(__file__).resolve().parents[1]


def test_hundred_trials_break_nothing(tmp_path: Path) -> None:
    """What CI runs: 100 trials (the documented run is 1,000; see README)."""
    summary = run_trials(100, seed=20261201, jobs=2, workdir=tmp_path)
    assert len(summary.results) == 100
    phases = summary.kills_by_phase()
    killed_at_steps = sum(n for phase, n in phases.items() if phase.startswith("kill"))
    # how many kills land depends on the machine's speed (a trial may finish before its
    # kill); the run must still kill at random instants and at steps, many times
    assert phases["random"] >= 5 and killed_at_steps >= 20, phases
    assert phases["random"] + killed_at_steps >= 50, phases
    assert summary.violations == [], summary.violations[:10]


def _finished_trial(tmp_path: Path) -> tuple[Path, Observed]:
    """A child that runs to the end (no kill), for the tests that prove checks bite."""
    root = tmp_path / "store"
    for seed in range(1, 50):  # a seed whose plan kills nobody is rare; run with none
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop(faults.ENV_VAR, None)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "runtime.torture._child",
                "--root",
                str(root),
                "--seed",
                str(seed),
            ],
            env=env,
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
        obs = Observed.parse(out)
        if any(
            e["type"] == "tool.completed" for s in obs.streams.values() for e in s.events.values()
        ):
            return root, obs
    raise AssertionError("no seed ran a tool")


def _rewrite(root: Path, change: Any) -> None:
    """Apply ``change(messages)`` to every snapshot (journals emptied by a full save)."""
    for path in (root / "sessions").glob("*.json"):
        if path.name.startswith("_"):
            continue
        body = orjson.loads(path.read_bytes())
        change(body["messages"])
        path.write_bytes(orjson.dumps(body))


def test_a_lost_tool_result_is_reported(tmp_path: Path) -> None:
    root, obs = _finished_trial(tmp_path)

    def drop_tool(messages: list[dict[str, Any]]) -> None:
        for i, m in enumerate(messages):
            if m.get("role") == "tool":
                del messages[i]
                return

    _rewrite(root, drop_tool)
    violations = anyio.run(reopen_and_check, root, obs, {}, 0)
    assert any(v.category == "lost" and "tool result" in v.detail for v in violations), violations


def test_a_duplicated_prompt_is_reported(tmp_path: Path) -> None:
    root, obs = _finished_trial(tmp_path)

    def double_prompt(messages: list[dict[str, Any]]) -> None:
        first = next(m for m in messages if m.get("role") == "user")
        messages.append(dict(first))

    _rewrite(root, double_prompt)
    violations = anyio.run(reopen_and_check, root, obs, {}, 0)
    assert any(v.category == "duplicates" for v in violations), violations


def test_a_message_durable_at_the_last_check_must_stay(tmp_path: Path) -> None:
    root, obs = _finished_trial(tmp_path)
    baselines: dict[str, list[dict[str, Any]]] = {}
    assert anyio.run(reopen_and_check, root, obs, baselines, 0) == []
    assert baselines  # each session's messages after the check's new turn
    _rewrite(root, lambda messages: messages.pop(0))
    violations = anyio.run(reopen_and_check, root, Observed(), baselines, 1)
    assert any("durable at the last check" in v.detail for v in violations), violations


def test_a_trial_killed_at_a_step_reports_its_phase(tmp_path: Path) -> None:
    for seed in range(100):
        result = run_trial(tmp_path / f"s{seed}", seed, seed, {})
        if result.phase not in ("random", "none"):
            break
    assert result.phase.split(":")[0] in ("kill", "kill-after", "kill-torn")
    assert result.phase.split(":")[1] in faults.STEPS
    assert result.violations == []


def test_command_line_prints_the_table_and_exits_0(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.torture", "--trials", "3", "--seed", "7"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, COLUMNS="100", TMPDIR=str(tmp_path)),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "crash torture: 3 trials" in proc.stdout
    for row in ("lost", "corrupt", "duplicates", "markers"):
        assert row in proc.stdout


def test_command_line_rejects_bad_arguments() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.torture", "--trials", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "invalid trials 0: must be an integer >= 1" in proc.stderr


@pytest.mark.parametrize(
    ("spec", "rule"),
    [
        ("kill", "must be ACTION:STEP[:N]"),
        ("kill:journal_append:x", "must be ACTION:STEP[:N]"),
        ("kill:nowhere", "invalid fault step 'nowhere'"),
        ("EWHAT:rename", "invalid fault action 'EWHAT'"),
        ("kill:rename:0", "invalid fault nth 0"),
    ],
)
def test_fault_spec_errors_name_the_value(spec: str, rule: str) -> None:
    with pytest.raises(ValueError, match=rule.replace("[", r"\[").replace("]", r"\]")):
        faults.FaultPlan.parse(spec)
