"""``python -m runtime.torture --resume``: a short run of the real command (the documented
run is 1,000 trials; see README)."""

from __future__ import annotations

import subprocess
import sys

from .helpers import ROOT, env


def test_resume_torture_command_passes_a_short_run() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runtime.torture", "--resume", "--trials", "8", "--jobs", "2"],
        cwd=ROOT,
        env=env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = [line for line in proc.stdout.splitlines() if line.startswith("resume torture: 8")]
    assert summary, proc.stdout
    assert "0 lost, 0 tool calls executed twice, 0 violations" in summary[-1]
