"""One torture trial (start the child, kill it, reopen, check) and a run of many."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from .._runtime import Runtime
from ..stores import faults
from ..stores.files import FileStore
from ..testing import Reply, scripted_agent
from ._check import Observed, Violation, check_store

__all__ = ["KILL_STEPS", "Summary", "TrialResult", "reopen_and_check", "run_trial", "run_trials"]

#: The I/O steps a trial may kill at (``faults.STEPS`` that a turn, a delete or a
#: recovery reaches), with the largest N worth drawing for each.
KILL_STEPS = {
    "journal_append": 3,
    "fdatasync": 4,
    "snapshot_write": 3,
    "events_file": 2,
    "index": 3,
    "tombstone": 1,
    "fsync": 4,
    "rename": 4,
    "dir_fsync": 3,
    "truncate": 2,
    "unlink": 1,
}
_WRITE_STEPS = {"journal_append", "snapshot_write", "events_file", "index", "tombstone"}

#: Seconds a child may run before the trial counts it as hung.
CHILD_TIMEOUT = 60.0


@dataclass
class TrialResult:
    """How one trial went: where the child died and what broke."""

    trial: int
    seed: int
    phase: str  # "random", "<action>:<step>", or "none" (the child finished first)
    violations: list[Violation]
    seconds: float


class Totals:
    """What every torture's summary counts: the violations of its ``results``."""

    results: list[Any]

    @property
    def violations(self) -> list[Violation]:
        return [v for r in self.results for v in r.violations]

    def by_category(self) -> Counter[str]:
        return Counter(v.category for v in self.violations)


@dataclass
class Summary(Totals):
    """Totals over a run."""

    results: list[TrialResult] = field(default_factory=list)

    def kills_by_phase(self) -> Counter[str]:
        return Counter(r.phase for r in self.results)


def _plan(rng: random.Random) -> tuple[str, float | None]:
    """The kill of one trial: a fault spec for the child, or a delay for the parent."""
    if rng.random() < 0.4:
        return "", rng.uniform(0.1, 0.7)
    step = rng.choice(sorted(KILL_STEPS))
    actions = ["kill", "kill-after"] + (["kill-torn"] * 2 if step in _WRITE_STEPS else [])
    return f"{rng.choice(actions)}:{step}:{rng.randint(1, KILL_STEPS[step])}", None


def _run_child(root: Path, seed: int, spec: str, delay: float | None) -> tuple[bytes, int, str]:
    args = ["-m", "runtime.torture._child", "--root", str(root), "--seed", str(seed)]
    return run_killed(args, spec, delay)


def run_killed(
    args: list[str], spec: str, delay: float | None, *, from_output: bool = False
) -> tuple[bytes, int, str]:
    """Run ``python ARGS`` with the fault spec ``spec`` (if any) and SIGKILL it after
    ``delay`` seconds (counted from its first output if ``from_output``), or let it end
    within :data:`CHILD_TIMEOUT`; returns (stdout, exit status, stderr)."""
    env = dict(os.environ)
    env.pop(faults.ENV_VAR, None)
    if spec:
        env[faults.ENV_VAR] = spec
    proc = subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    chunks: list[bytes] = []
    spoke = threading.Event()

    def read() -> None:
        stdout = proc.stdout
        assert stdout is not None
        for chunk in iter(lambda: os.read(stdout.fileno(), 65536), b""):
            chunks.append(chunk)
            spoke.set()
        spoke.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if delay is not None and from_output:
        spoke.wait(CHILD_TIMEOUT)
    try:
        proc.wait(timeout=delay if delay is not None else CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=CHILD_TIMEOUT)
    reader.join(CHILD_TIMEOUT)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    assert proc.stdout is not None
    proc.stdout.close()
    return b"".join(chunks), proc.returncode, err


async def reopen_and_check(
    root: Path, obs: Observed, baselines: dict[str, list[dict[str, Any]]], trial: int
) -> list[Violation]:
    """Open ``root`` in a new :class:`~runtime.Runtime` (recovery runs) and
    :func:`~runtime.torture.check_store` it; a store that does not reopen is
    ``corrupt``."""
    agent = scripted_agent([Reply("ok.")])
    try:
        rt = Runtime(FileStore(root), agent, checkpoint_interval=0.05)
        async with rt:
            return await check_store(rt, root, obs, baselines, trial)
    except Exception as exc:
        return [Violation("corrupt", f"trial {trial}: the store does not reopen: {exc!r}")]


def run_trial(
    root: Path, trial: int, seed: int, baselines: dict[str, list[dict[str, Any]]]
) -> TrialResult:
    """Run the child on ``root``, kill it as ``seed`` decides, reopen and check."""
    started = time.monotonic()
    rng = random.Random(seed)
    spec, delay = _plan(rng)
    out, code, err = _run_child(root, seed, spec, delay)
    obs = Observed.parse(out)
    violations: list[Violation] = []
    if code == -signal.SIGKILL:
        phase = spec.rsplit(":", 1)[0] if spec else "random"
    elif code == 0 and obs.exited:
        phase = "none"
    else:
        phase = "failed"
        tail = err.strip().splitlines()[-3:]
        violations.append(Violation("child_failed", f"trial {trial}: exit {code}: {tail}"))
    violations += anyio.run(reopen_and_check, root, obs, baselines, trial)
    return TrialResult(trial, seed, phase, violations, time.monotonic() - started)


def _chain(base: Path, trials: list[int], seed: int, report: Callable[[TrialResult], None]) -> None:
    root = base / f"chain-{trials[0]}"
    baselines: dict[str, list[dict[str, Any]]] = {}
    for trial in trials:
        result = run_trial(root, trial, seed * 1_000_003 + trial, baselines)
        report(result)
        if any(v.category == "corrupt" for v in result.violations):
            shutil.rmtree(root, ignore_errors=True)  # start the chain again from empty
            baselines.clear()


def run_trials(
    trials: int,
    *,
    seed: int = 0,
    chain: int = 10,
    jobs: int = 1,
    workdir: Path | None = None,
    report: Callable[[TrialResult], None] | None = None,
) -> Summary:
    """Run ``trials`` trials, ``chain`` per store root, ``jobs`` chains at a time.

    :param seed: the run's seed; trial ``t`` uses ``seed * 1000003 + t``.
    :param workdir: where the store roots go (default: a temporary directory, removed
        afterwards).
    :param report: called with each :class:`TrialResult` as it completes (from a
        worker thread).
    :raises ValueError: for ``trials``, ``chain`` or ``jobs`` < 1.
    """
    summary = Summary()
    run_chains(summary, _chain, trials, seed, chain, jobs, workdir, report, "runtime-torture-")
    return summary


def run_chains(
    summary: Totals,
    run_chain: Callable[[Path, list[int], int, Callable[[Any], None]], None],
    trials: int,
    seed: int,
    chain: int,
    jobs: int,
    workdir: Path | None,
    report: Callable[[Any], None] | None,
    prefix: str,
) -> None:
    """Split ``trials`` into chains of ``chain`` (one store root each), run them
    ``jobs`` at a time with ``run_chain(base, trials, seed, collect)``, and collect the
    results into ``summary`` sorted by trial.

    :raises ValueError: for ``trials``, ``chain`` or ``jobs`` < 1.
    """
    for name, value in (("trials", trials), ("chain", chain), ("jobs", jobs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"invalid {name} {value!r}: must be an integer >= 1")
    lock = threading.Lock()

    def collect(result: Any) -> None:
        with lock:
            summary.results.append(result)
        if report is not None:
            report(result)

    chains = [list(range(i, min(i + chain, trials))) for i in range(0, trials, chain)]
    with (
        tempfile.TemporaryDirectory(prefix=prefix, dir=workdir) as tmp,
        ThreadPoolExecutor(max_workers=jobs) as pool,
    ):
        for f in [pool.submit(run_chain, Path(tmp), c, seed, collect) for c in chains]:
            f.result()
    summary.results.sort(key=lambda r: r.trial)
