"""Shared by the resume tests: real ``runtime`` processes on a real FileStore, killed
with SIGKILL at a chosen step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RESTART = str(ROOT / "tests" / "resume" / "restart.py")


def env(**extra: str) -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    out.update(extra)
    return out


def lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def wait_for_lines(path: Path, n: int, proc: subprocess.Popen[Any], timeout: float = 120) -> None:
    """Until ``path`` has ``n`` lines (fails if ``proc`` ends first)."""
    deadline = time.monotonic() + timeout
    while len(lines(path)) < n:
        assert proc.poll() is None, f"the process ended early: {proc.returncode}"
        assert time.monotonic() < deadline, f"{path} did not reach {n} lines"
        time.sleep(0.005)


def kill(proc: subprocess.Popen[Any]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def start_run(
    store: Path, agent: str, prompt: str, environ: dict[str, str]
) -> subprocess.Popen[str]:
    """``runtime run AGENT PROMPT --json`` on the FileStore ``store``."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime",
            "run",
            agent,
            prompt,
            "--json",
            "--store",
            str(store),
            "--checkpoint-interval",
            "0.2",
        ],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def first_event(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The first JSON event the process printed (``stream.started``)."""
    assert proc.stdout is not None
    event: dict[str, Any] = json.loads(proc.stdout.readline())
    return event


def start_restart(
    store: Path, agent: str, session_id: str, environ: dict[str, str], attempts: int = 3
) -> subprocess.Popen[str]:
    """A restarted process with ``resume="auto"`` (``tests/resume/restart.py``)."""
    return subprocess.Popen(
        [sys.executable, RESTART, str(store), agent, session_id, str(attempts)],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> dict[str, Any]:
    """The session JSON a restarted process printed once the turn was over."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    session: dict[str, Any] = json.loads(out.splitlines()[-1])
    return session


def comparable(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages without what differs between two runs: times and stream ids."""
    return [{k: v for k, v in m.items() if k not in ("timestamp", "stream_id")} for m in messages]


def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve(
    store: Path,
    agent: str,
    port: int,
    log: Path,
    environ: dict[str, str],
    resume: str = "auto",
) -> subprocess.Popen[bytes]:
    """``runtime serve AGENT --resume auto`` (uvicorn) on 127.0.0.1:``port``, once it
    answers ``/openapi.json``; its output goes to ``log``."""
    import httpx

    command = [
        sys.executable,
        "-m",
        "runtime",
        "serve",
        agent,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--store",
        str(store),
        "--resume",
        resume,
        "--checkpoint-interval",
        "0.2",
        "--heartbeat",
        "0.5",
        "--log-level",
        "warning",
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=environ, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text(errors="replace")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1.0).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.05)
