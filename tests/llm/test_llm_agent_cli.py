"""``runtime run examples/llm_agent.py:agent "…"`` through the real CLI, against the
chat-completions stand-in (``chat_standin.py``, a stand-in for a paid API): the model calls
a research tool over a small corpus, gets the real result back, and answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from chat_standin import validate_messages
from conftest import StandIn

pytest.importorskip("openai")

ROOT = Path(__file__).resolve().parents[2]
AGENT = "examples/llm_agent.py:agent"


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path, standin: StandIn) -> dict[str, str]:
    corpus = tmp_path / "corpus"
    (corpus / "pkg").mkdir(parents=True)
    (corpus / "pkg" / "runner.py").write_text(
        "import asyncio\n\n\nasync def main():\n    async with asyncio.TaskGroup() as tg:\n"
        "        tg.create_task(work())\n",
        encoding="utf-8",
    )
    (corpus / "top.py").write_text("# nothing about task groups\n", encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    environ.update(
        PYTHONPATH=str(ROOT),
        RUNTIME_HOME=str(tmp_path / "home"),
        RUNTIME_MODEL="standin-1",
        OPENAI_BASE_URL=standin.url,
        RESEARCH_CORPUS=str(corpus),
    )
    return environ


def test_llm_agent_runs_through_the_cli_with_a_tool_call(
    env: dict[str, str], standin: StandIn
) -> None:
    standin.script(
        {
            "content": "Searching. ",
            "tool_calls": [
                {"id": "call_s1", "name": "search", "arguments": '{"term": "TaskGroup"}'}
            ],
            "split": 4,
        },
        {"content": "TaskGroup is used in pkg/runner.py:5.", "split": 6},
    )
    done = cli(env, "run", AGENT, "Where is TaskGroup used?", "--json")
    assert done.returncode == 0, done.stderr
    events = [orjson.loads(line) for line in done.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert types[0] == "stream.started" and types[-2:] == ["done", "stream.end"]
    (completed,) = [e["data"] for e in events if e["type"] == "tool.completed"]
    assert completed["call_id"] == "call_s1" and completed["error"] is None
    assert completed["result"]["matching_lines"] == 1
    assert completed["result"]["matches"][0]["path"] == "pkg/runner.py"
    text = "".join(e["data"]["text"] for e in events if e["type"] == "token")
    assert text == "Searching. TaskGroup is used in pkg/runner.py:5."

    first, second = standin.requests()
    assert [t["function"]["name"] for t in first["body"]["tools"]] == [
        "list_packages",
        "search",
        "read_region",
    ]
    assert first["body"]["messages"][0]["role"] == "system"
    sent = second["body"]["messages"]
    validate_messages(sent)
    assert sent[-1]["tool_call_id"] == "call_s1"
    assert orjson.loads(sent[-1]["content"])["matches"][0]["line"] == 5

    session_id = events[0]["session_id"]
    shown = cli(env, "sessions", "show", session_id, "--json")
    assert shown.returncode == 0, shown.stderr
    session: dict[str, Any] = orjson.loads(shown.stdout.splitlines()[0])
    roles = [m["role"] for m in session["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant"]


def test_llm_agent_without_a_model_name_fails_clearly(env: dict[str, str]) -> None:
    env.pop("RUNTIME_MODEL")
    done = cli(env, "run", AGENT, "hello", "--json")
    assert done.returncode == 1
    events = [orjson.loads(line) for line in done.stdout.splitlines()]
    error = next(e for e in events if e["type"] == "error")
    assert "RUNTIME_MODEL is not set" in error["data"]["message"]


def test_sigkill_after_a_tool_call_then_the_next_turn_sends_a_valid_history(
    env: dict[str, str], standin: StandIn
) -> None:
    """Kill the CLI while the model streams its answer after a tool call; after the
    restart the transcript keeps the call, its result, the partial answer and one
    interrupted marker, and the next turn sends all of it back in a form the strict
    server accepts."""
    call = {"id": "call_k1", "name": "search", "arguments": '{"term": "TaskGroup"}'}
    standin.script(
        {"tool_calls": [call]},
        {"content": "TaskGroup appears in " * 60, "split": 3, "delay": 0.02},
    )
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "runtime", "run", AGENT, "Where is TaskGroup used?"),
            *("--json", "--checkpoint-interval", "0.1"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    streamed = ""
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = orjson.loads(line)
            session_id = event["session_id"]
            if event["type"] == "token":
                streamed += event["data"]["text"]
            if event["type"] == "checkpoint" and len(streamed) > 30:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait()
    shown = cli(env, "sessions", "show", session_id, "--json")
    assert shown.returncode == 0, shown.stderr
    messages = orjson.loads(shown.stdout.splitlines()[0])["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "assistant"]
    assert messages[2]["tool_call_id"] == "call_k1"
    assert messages[3]["_partial"] is True and streamed.startswith(messages[3]["content"])
    assert messages[4]["type"] == "interrupted"

    standin.script({"content": "Picking up again."})
    done = cli(env, "run", AGENT, "Go on.", "--session", session_id, "--json")
    assert done.returncode == 0, done.stderr
    (request,) = standin.requests()
    assert request["status"] == 200
    sent = request["body"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert sent[4]["content"].endswith(
        "[This answer was cut off before it was finished.]\n\n"
        "[This turn was interrupted because the process running it stopped.]"
    )
