"""The demo page in a real headless Chromium survives a server restart mid-stream.

The Debian ``chromium`` package is driven by playwright-core from npm
(``tests/browser/package.json``; no browser download). The page sends a message, the
server is restarted while tokens stream, and EventSource reconnects with
``Last-Event-ID``:

* graceful restart (SIGTERM, the turn finishes within ``--shutdown-grace``): the page
  ends with every token exactly once, in order, and ``done``;
* crash (SIGKILL): the page ends with the tokens it saw exactly once, then the
  ``interrupted`` error and ``stream.end`` from the restarted server.

Screenshots land in ``tests/browser/artifacts/``. Missing Chromium, node or the npm
install skip this test with the fix in the reason on a developer machine (the README's
test command must work with only Python), and fail it loudly where the browser is
required: in CI (``.ci/run`` sets ``RUNTIME_REQUIRE_BROWSER=1`` after installing both).
``RUNTIME_SKIP_BROWSER=1`` skips it on purpose.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "http"))

from sse_agents import token_text  # noqa: E402
from sse_helpers import ServerProcess, free_port  # noqa: E402

CHROMIUM = Path(os.environ.get("RUNTIME_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = HERE / "artifacts"
TOKENS = 60  # as in demo_restart.js


def _require_browser_stack() -> str:
    """The node binary; skips, or fails where the browser is required, naming the fix."""
    if os.environ.get("RUNTIME_SKIP_BROWSER") == "1":
        pytest.skip("RUNTIME_SKIP_BROWSER=1")
    node = shutil.which("node")
    problems = []
    if not CHROMIUM.exists():
        problems.append(f"{CHROMIUM} is missing: apt-get install -y chromium")
    if node is None:
        problems.append("node is missing: apt-get install -y nodejs npm")
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        problems.append(f"playwright-core is not installed: npm ci --prefix {HERE}")
    if problems:
        reason = "browser test cannot run: " + "; ".join(problems)
        if os.environ.get("RUNTIME_REQUIRE_BROWSER") == "1" or os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    assert node is not None
    return node


def _expected(n: int) -> str:
    return "".join(token_text(i) for i in range(1, n + 1))


def _drive(node: str, server_box: list[ServerProcess], tmp_path: Path) -> list[dict[str, Any]]:
    """Run demo_restart.js, restarting the server whenever it asks; return its results."""
    server = server_box[0]
    proc = subprocess.Popen(
        [
            node,
            str(HERE / "demo_restart.js"),
            server.base_url + "/",
            str(ARTIFACTS),
            "term",
            "kill",
        ],
        cwd=HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdin: IO[str] = proc.stdin  # type: ignore[assignment]
    stdout: IO[str] = proc.stdout  # type: ignore[assignment]
    results: list[dict[str, Any]] = []
    transcript: list[str] = []
    try:
        for line in stdout:
            transcript.append(line.rstrip())
            msg = json.loads(line)
            if "need" in msg:
                if msg["mode"] == "term":
                    server.terminate()  # graceful: the turn finishes within the grace
                else:
                    server.kill()  # crash: no final save
                server = ServerProcess(server.store, server.port, server.log, *server.extra).start()
                server_box.append(server)
                stdin.write("restarted\n")
                stdin.flush()
            elif "result" in msg:
                results.append(msg["result"])
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    log = "\n".join(transcript)
    assert code == 0, f"browser driver failed ({code}):\n{log}\n{stderr}\n{server.output()}"
    return results


def test_demo_page_survives_server_restarts_mid_stream(tmp_path: Path) -> None:
    node = _require_browser_stack()
    ARTIFACTS.mkdir(exist_ok=True)
    server = ServerProcess(
        tmp_path / "store",
        free_port(),
        tmp_path / "server.log",
        "--retry-ms",
        "200",
        "--shutdown-grace",
        "60",
        "--checkpoint-interval",
        "0.1",
    )
    servers = [server.start()]
    try:
        results = {r["mode"]: r for r in _drive(node, servers, tmp_path)}
    finally:
        for s in servers:
            s.kill()

    graceful = results["term"]
    assert graceful["anomalies"] == []
    assert graceful["seqs"] == list(range(1, len(graceful["seqs"]) + 1))
    assert "".join(graceful["texts"]) == _expected(TOKENS)  # every token, exactly once
    assert graceful["types"][-2:] == ["done", "stream.end"]
    assert graceful["turnState"] == "done"
    assert graceful["reconnects"] >= 1  # the page really lost the server and came back
    assert Path(graceful["screenshot"]).stat().st_size > 0

    crashed = results["kill"]
    assert crashed["anomalies"] == []
    assert crashed["seqs"] == list(range(1, len(crashed["seqs"]) + 1))
    text = "".join(crashed["texts"])
    seen = text.split()
    assert len(seen) >= 8
    assert text == _expected(len(seen))  # the tokens it got, each exactly once, in order
    assert text.startswith(crashed["beforeRestart"])
    assert crashed["types"][-2:] == ["error", "stream.end"]
    assert crashed["turnState"] == "interrupted"
    assert crashed["reconnects"] >= 1
    assert Path(crashed["screenshot"]).stat().st_size > 0
