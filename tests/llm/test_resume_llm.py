"""The OpenAI-compatible agent resumes a turn killed in the middle of a non-idempotent
tool call: the call is not run again, the model gets the "outcome unknown" result in a
valid history (no second prompt) and answers. Real processes: ``runtime run`` SIGKILLed,
then ``runtime resume``; the model is the chat-completions stand-in (a paid API)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import StandIn

pytest.importorskip("openai")

ROOT = Path(__file__).resolve().parents[2]
AGENT = "tests/resume/llm_agents.py:agent"


def test_openai_agent_resumes_without_running_the_tool_again(
    tmp_path: Path, standin: StandIn
) -> None:
    effects = tmp_path / "effects"
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(PYTHONPATH=str(ROOT), OPENAI_BASE_URL=standin.url, RESUME_SIDE_EFFECTS=str(effects))
    standin.script(
        {"tool_calls": [{"id": "call_t1", "name": "transfer", "arguments": '{"amount": 5}'}]},
        {"content": "The transfer may or may not have happened; please check."},
    )
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime",
            "run",
            AGENT,
            "send 5",
            "--json",
            "--store",
            str(store),
            "--checkpoint-interval",
            "0.1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert run.stdout is not None
    session_id = json.loads(run.stdout.readline())["session_id"]
    deadline = time.monotonic() + 60
    while not effects.exists():
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=30)

    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime",
            "resume",
            session_id,
            "--agent",
            AGENT,
            "--json",
            "--store",
            str(store),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert any(e["type"] == "stream.resumed" for e in events)
    assert effects.read_text().splitlines() == ["transfer 5"]  # not run again
    requests = [r["body"] for r in standin.requests()]
    assert len(requests) == 2  # the first call before the crash, one after
    messages = requests[1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]  # one prompt
    result = json.loads(messages[2]["content"])
    assert result["status"] == "outcome_unknown" and result["call_id"] == "call_t1"
    done = [e for e in events if e["type"] == "done"]
    assert done and events[-1]["data"]["outcome"] == "done"
