"""``POST /api/agui`` consumed by AG-UI's own TypeScript client (``@ag-ui/client``'s
``HttpAgent``, what CopilotKit runs) in Node against a real ``runtime serve`` process:
the client verifies the event order itself and builds its messages from the events.

Needs node and ``npm ci`` in this folder: skipped with the fix in the reason on a
developer machine, failed when ``CI=true``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sse_helpers import ServerProcess, free_port
from test_ai_sdk import HERE, _node

AGENT = f"{HERE / 'chat_agents.py'}:agent"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("agui_client")
    proc = ServerProcess(tmp / "store", free_port(), tmp / "server.log", agent=AGENT)
    proc.start()
    yield proc
    proc.kill()


def run_client(server: ServerProcess, thread: str, *texts: str) -> Any:
    done = subprocess.run(
        [_node(), str(HERE / "agui_client.mjs"), server.base_url, thread, *texts],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{done.stderr}\n--- server log:\n{server.output()}"
    return json.loads(done.stdout)


def test_http_agent_runs_turns_and_builds_its_messages(server: ServerProcess) -> None:
    out = run_client(server, "agui-thread", "reason=1 tokens=3 tool_every=2", "fail=1 tokens=1")
    first, second = out["runs"]
    assert "thrown" not in first
    assert first["errors"] == []
    assert first["events"][0] == "RUN_STARTED"
    assert first["events"][-1] == "RUN_FINISHED"
    roles = [m["role"] for m in first["newMessages"]]
    assert roles == ["reasoning", "assistant", "tool", "assistant"]
    reasoning, text1, tool, text2 = first["newMessages"]
    assert reasoning["content"] == "thinking hard"
    assert text1["content"] + text2["content"] == "w001 w002 w003 "
    # as in the runtime's transcript: the call sits in the message streamed before it
    (tool_call,) = text1["toolCalls"]
    assert tool_call["function"]["name"] == "count"
    assert json.loads(tool_call["function"]["arguments"]) == {"i": 2}
    assert tool["toolCallId"] == tool_call["id"]
    assert json.loads(tool["content"]) == {"i": 2, "square": 4}

    assert second["errors"] == ["agent failed on purpose"]
    assert second["events"][-1] == "RUN_ERROR"
    failed_tool = next(m for m in second["newMessages"] if m["role"] == "tool")
    assert failed_tool["content"] == "error: ValueError: tool blew up"

    # The runtime kept the thread as one session with both turns.
    session = httpx.get(f"{server.base_url}/api/sessions/agui-thread").json()
    users = [m["content"] for m in session["messages"] if m["role"] == "user"]
    assert users == ["reason=1 tokens=3 tool_every=2", "fail=1 tokens=1"]
