"""Smoke tests of the benchmark suite: it runs, and its JSON has the documented shape.

Timings are never asserted (they belong to ``benchmarks/``, not to the test suite).
The runs are real: ``python -m benchmarks --quick`` in a subprocess, real files and
fsyncs in a temp dir. The "peer not installed" case hides the peers' packages from the
child interpreter (``sys.modules[name] = None``) instead of uninstalling them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
PEERS = (
    "runtime",
    "langgraph_sqlite",
    "openai_sqlite",
    "hermes_rewrite",
    "jsonl_append",
    "jsonl_thread",
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    extra = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + extra if extra else "")
    return env


def _run(args: list[str], *, prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = f"import sys\n{prelude}\nfrom benchmarks import main\nsys.exit(main({args!r}))"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def test_quick_w1_w4_json_shape(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "W1,W4", "--json", str(out)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = orjson.loads(out.read_bytes())
    assert set(data) >= {"machine", "versions", "W1", "W4"}
    assert "W2" not in data  # --only is honoured
    assert data["machine"]["cores"] == os.cpu_count()
    assert "orjson" in data["versions"]

    w1 = data["W1"]
    assert w1["unit"] == "ms"
    assert _is_number(w1["floor_ms"]) and w1["floor_ms"] > 0
    assert set(w1["systems"]) == set(PEERS)
    for name, by_n in w1["systems"].items():
        assert set(by_n) == {"100", "1000"}, name
        if name in w1.get("notes", {}):
            assert all(v is None for v in by_n.values())
        else:
            assert all(_is_number(v) and v > 0 for v in by_n.values()), (name, by_n)
    assert _is_number(w1["systems"]["runtime"]["100"])
    assert _is_number(w1["systems"]["jsonl_append"]["1000"])

    w4 = data["W4"]
    assert w4["unit"] == "events/s"
    key = str(w4["events"])
    for name in ("runtime", "asyncio_queue", "anyio_stream"):
        assert _is_number(w4["systems"][name][key]) and w4["systems"][name][key] > 0
    # tables were printed
    assert "W1 append one message" in proc.stdout
    assert "asyncio.Queue" in proc.stdout


def test_missing_peers_say_not_installed(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    prelude = "for m in ('langgraph', 'agents', 'aiosqlite'):\n    sys.modules[m] = None"
    proc = _run(["--quick", "--only", "W3", "--json", str(out)], prelude=prelude)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    w3 = orjson.loads(out.read_bytes())["W3"]
    assert w3["notes"]["langgraph_sqlite"] == "not installed"
    assert w3["notes"]["openai_sqlite"] == "not installed"
    assert w3["systems"]["langgraph_sqlite"] == {"100": None, "1000": None}
    assert _is_number(w3["systems"]["runtime"]["1000"])
    assert _is_number(w3["systems"]["orjson_loads"]["1000"])
    assert "not installed" in proc.stdout


@pytest.mark.parametrize("only", ["W9", "", "W1,,X"])
def test_bad_only_is_refused(tmp_path: Path, only: str) -> None:
    out = tmp_path / "bench.json"
    proc = _run(["--only", only, "--json", str(out)])
    assert proc.returncode == 2
    assert "invalid --only" in proc.stderr
    assert not out.exists()


def test_load_sse_runs_and_reports_its_figures(tmp_path: Path) -> None:
    """``python -m benchmarks.load_sse`` with a few clients for a few seconds: a real
    server, real sockets. Only correctness is asserted (nothing lost, no non-reader held,
    no traceback), never a timing."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.load_sse",
            "--clients",
            "30",
            "--sessions",
            "3",
            "--seconds",
            "4",
            "--baseline-seconds",
            "2",
            "--tokens",
            "60",
            "--interval",
            "0.01",
        ],
        cwd=ROOT,
        env=dict(_env(), TMPDIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = orjson.loads(proc.stdout)
    for phase in ("baseline_without_non_readers", "load"):
        assert report[phase]["turns"] >= 1
        assert report[phase]["events_lost"] == 0
        assert report[phase]["non_readers_held"] == 0
    assert report["load"]["non_readers"] >= 1
    assert report["server_peak_rss_mib"] > 0
    assert report["server_tracebacks"] == 0
