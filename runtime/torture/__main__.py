"""``python -m runtime.torture --trials N [--seed S] [--jobs J] [--chain C]``: see
:mod:`runtime.torture`. Exit status 1 if any invariant broke."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

from ._check import CATEGORIES
from ._trial import Summary, TrialResult, run_trials


def _table(title: str, rows: list[tuple[str, int]], categories: dict[str, int]) -> object:
    """The summary table: ``rows`` of counts, then each violation category (red if any)."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("measure")
    table.add_column("count", justify="right")
    for name, n in rows:
        table.add_row(name, str(n))
    for category, n in categories.items():
        table.add_row(category, str(n), style="red" if n else None)
    return table


def _crash_table(summary: Summary, seconds: float) -> object:
    rows = [("trials", len(summary.results))]
    for phase, n in sorted(summary.kills_by_phase().items()):
        rows.append((f"killed at {phase}" if phase != "none" else "finished before the kill", n))
    counts = summary.by_category()
    return _table(
        f"crash torture: {len(summary.results)} trials in {seconds:.0f} s",
        rows,
        {c: counts.get(c, 0) for c in CATEGORIES},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runtime.torture", description=__doc__)
    parser.add_argument("--trials", type=int, default=100, help="number of trials (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run (default 0)")
    parser.add_argument("--jobs", type=int, default=1, help="chains run at once (default 1)")
    parser.add_argument("--chain", type=int, default=10, help="trials per store root (default 10)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="torture durable resume: kill turns of non-idempotent tool calls, let "
        "Runtime(resume='auto') resume them; each must complete (or end resume_exhausted) "
        "with every tool call taking effect at most once",
    )
    args = parser.parse_args(argv)
    try:
        from rich.console import Console
    except ImportError:
        sys.stderr.write("python -m runtime.torture needs rich: pip install 'runtime[cli]'\n")
        return 2
    console = Console()
    logging.getLogger("runtime").setLevel(logging.ERROR)  # stale repairs are expected here
    started = time.monotonic()
    if args.resume:
        return _resume_main(args, console, started)

    def report(result: TrialResult) -> None:
        for v in result.violations:
            console.print(
                f"[red]{v.category}[/red] {v.detail} (seed {result.seed}, {result.phase})"
            )

    try:
        summary = run_trials(
            args.trials, seed=args.seed, chain=args.chain, jobs=args.jobs, report=report
        )
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    console.print(_crash_table(summary, time.monotonic() - started))
    return 1 if summary.violations else 0


def _resume_main(args: argparse.Namespace, console: Any, started: float) -> int:
    from ._resume import RESUME_CATEGORIES, ResumeTrial, run_resume_trials

    done = [0, 0]  # trials, violations

    def report(result: ResumeTrial) -> None:
        for v in result.violations:
            console.print(f"[red]{v.category}[/red] {v.detail} (seed {result.seed})")
        done[0] += 1
        done[1] += len(result.violations)
        if done[0] % 50 == 0:
            elapsed = time.monotonic() - started
            console.print(f"{done[0]} trials, {done[1]} violations, {elapsed:.0f} s")

    try:
        summary = run_resume_trials(
            args.trials, seed=args.seed, chain=args.chain, jobs=args.jobs, report=report
        )
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    seconds = time.monotonic() - started
    rows = [("trials", len(summary.results)), ("kills", summary.kills())]
    rows += [(f"ended {outcome}", n) for outcome, n in sorted(summary.outcomes().items())]
    counts = summary.by_category()
    title = f"resume torture: {len(summary.results)} trials in {seconds:.0f} s"
    console.print(_table(title, rows, {c: counts.get(c, 0) for c in RESUME_CATEGORIES}))
    outcomes = summary.outcomes()
    console.print(
        f"resume torture: {len(summary.results)} trials, {summary.kills()} kills, "
        f"{outcomes.get('done', 0)} completed, {outcomes.get('resume_exhausted', 0)} "
        f"resume_exhausted, {counts.get('lost', 0)} lost, {counts.get('tool_twice', 0)} "
        f"tool calls executed twice, {len(summary.violations)} violations in {seconds:.0f} s"
    )
    return 1 if summary.violations else 0


if __name__ == "__main__":
    sys.exit(main())
