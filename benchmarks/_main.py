"""Command line: choose workloads, run them, print the tables, write the JSON."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import orjson

from ._config import Config, Context
from ._env import machine_info, versions
from ._report import Result, render

__all__ = ["WORKLOADS", "main"]

#: workload id -> module (each has ``ID``, ``TITLE`` and ``async run(ctx) -> Result``)
WORKLOADS = {
    "W1": "w1_append",
    "W2": "w2_bytes",
    "W3": "w3_load",
    "W4": "w4_events",
    "W5": "w5_sse",
    "W6": "w6_turns",
    "W7": "w7_list",
    "W8": "w8_recover",
    "WPG": "wpg_postgres",
    "WREDIS": "wredis",
}


def _parse_only(value: str) -> list[str]:
    ids = [part.strip().upper() for part in value.split(",") if part.strip()]
    unknown = [i for i in ids if i not in WORKLOADS]
    if unknown or not ids:
        raise argparse.ArgumentTypeError(
            f"invalid --only {value!r}: give a comma-separated list of {', '.join(WORKLOADS)}"
        )
    return ids


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the runtime's workloads W1-W8 side by side with its peers.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and few repetitions (CI smoke run, < 2 minutes)",
    )
    p.add_argument(
        "--only",
        type=_parse_only,
        default=list(WORKLOADS),
        metavar="W1,W4,...",
        help="run only these workloads",
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="write machine-readable results")
    p.add_argument(
        "--markdown",
        type=Path,
        metavar="PATH",
        help="also write every table as markdown (for docs/benchmarks.md)",
    )
    p.add_argument(
        "--tmp",
        type=Path,
        metavar="DIR",
        help="parent of the temp dir (default: the system temp dir); "
        "its file system is the one measured",
    )
    return p


async def _run(ids: list[str], ctx: Context, markdown: list[str]) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    failures = 0
    for wid in ids:
        module = importlib.import_module(f"benchmarks.{WORKLOADS[wid]}")
        print(f"[{wid}] running…", flush=True)
        t0 = time.perf_counter()
        try:
            result: Result = await module.run(ctx)
        except Exception as exc:
            failures += 1
            traceback.print_exc()
            out[wid] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        result.seconds = time.perf_counter() - t0
        for table in result.tables:
            render(table)
            markdown.append(table.markdown())
        out[wid] = result.to_json()
    return out, failures


def main(argv: list[str] | None = None) -> int:
    """Run the suite; returns the exit code (1 if a workload failed, 2 for bad arguments)."""
    args = _parser().parse_args(argv)
    config = Config.quick_run() if args.quick else Config.full()
    for flag, path in (("--json", args.json), ("--markdown", args.markdown)):
        if path is not None and not path.parent.exists():
            print(
                f"error: {flag} {str(path)!r}: directory {str(path.parent)!r} does not exist",
                file=sys.stderr,
            )
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="runtime-bench-", dir=args.tmp))
    started = time.perf_counter()
    try:
        ctx = Context(config, tmp, {})
        report: dict[str, Any] = {
            "machine": machine_info(tmp),
            "versions": versions(),
            "command": "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv),
            "quick": config.quick,
        }
        markdown: list[str] = []
        results, failures = asyncio.run(_run(args.only, ctx, markdown))
        report.update(results)
        report["seconds"] = round(time.perf_counter() - started, 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"total {report['seconds']} s", flush=True)
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        print(f"wrote {args.json}")
    if args.markdown is not None:
        args.markdown.write_text(
            f"Command: `{report['command']}`\n\n" + "\n".join(markdown), encoding="utf-8"
        )
        print(f"wrote {args.markdown}")
    return 1 if failures else 0
