"""``POST /api/agui`` against a real ``runtime serve`` (uvicorn) process on 127.0.0.1:
every event of the SSE answer validates against the ``ag-ui-protocol`` package's
models (``ag_ui.core.Event``), the request body is built from its ``RunAgentInput``,
and the events keep the protocol's ordering rules (each message and tool call opened
before its content and closed once; the run started first and finished or errored
last).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sse_helpers import ServerProcess, free_port

ag_ui = pytest.importorskip("ag_ui.core", reason="pip install -e '.[test]' (ag-ui-protocol)")
from pydantic import TypeAdapter  # noqa: E402

AGENT = f"{Path(__file__).resolve().parents[1] / 'chat_clients' / 'chat_agents.py'}:agent"
EVENT = TypeAdapter(ag_ui.Event)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("agui")
    proc = ServerProcess(tmp / "store", free_port(), tmp / "server.log", agent=AGENT)
    proc.start()
    yield proc
    proc.kill()


def run_input(thread: str, text: str, **extra: Any) -> dict[str, Any]:
    value = ag_ui.RunAgentInput(
        thread_id=thread,
        run_id=f"run-{thread}",
        state={"step": 1},
        messages=[ag_ui.UserMessage(id="m1", role="user", content=text)],
        tools=[],
        context=[ag_ui.Context(description="page", value="/home")],
        forwarded_props={"model": "small"},
        **extra,
    )
    dumped: dict[str, Any] = json.loads(value.model_dump_json(by_alias=True, exclude_none=True))
    return dumped


def run(server: ServerProcess, body: dict[str, Any]) -> list[Any]:
    """POST the input; the answer's events parsed by ag-ui-protocol's models."""
    r = httpx.post(
        server.base_url + "/api/agui",
        json=body,
        headers={"Accept": "text/event-stream"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    datas = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
    return [EVENT.validate_json(d) for d in datas]


def check_order(events: list[Any]) -> None:
    """AG-UI's ordering rules: RUN_STARTED first, RUN_FINISHED/RUN_ERROR last, content
    only inside its START/END, every START closed exactly once."""
    assert events[0].type == "RUN_STARTED"
    assert events[-1].type in ("RUN_FINISHED", "RUN_ERROR")
    open_ids: set[str] = set()
    for e in events:
        t = e.type
        if t in ("TEXT_MESSAGE_START", "REASONING_MESSAGE_START"):
            assert e.message_id not in open_ids
            open_ids.add(e.message_id)
        elif t in ("TEXT_MESSAGE_CONTENT", "REASONING_MESSAGE_CONTENT"):
            assert e.message_id in open_ids
        elif t in ("TEXT_MESSAGE_END", "REASONING_MESSAGE_END"):
            open_ids.remove(e.message_id)
        elif t == "TOOL_CALL_START":
            open_ids.add(e.tool_call_id)
        elif t == "TOOL_CALL_ARGS":
            assert e.tool_call_id in open_ids
        elif t == "TOOL_CALL_END":
            open_ids.remove(e.tool_call_id)
    assert open_ids == set()


def test_a_turn_as_agui_events(server: ServerProcess) -> None:
    events = run(server, run_input("thread-1", "reason=1 tokens=4 tool_every=2"))
    check_order(events)
    types = [e.type for e in events]
    assert types[:6] == [
        "RUN_STARTED",
        "REASONING_START",
        "REASONING_MESSAGE_START",
        "REASONING_MESSAGE_CONTENT",
        "REASONING_MESSAGE_CONTENT",
        "REASONING_MESSAGE_END",
    ]
    assert events[0].thread_id == "thread-1"
    assert events[0].run_id == "run-thread-1"
    text = "".join(e.delta for e in events if e.type == "TEXT_MESSAGE_CONTENT")
    assert text == "w001 w002 w003 w004 "
    starts = [e for e in events if e.type == "TOOL_CALL_START"]
    assert [s.tool_call_name for s in starts] == ["count", "count"]
    texts = [e.message_id for e in events if e.type == "TEXT_MESSAGE_START"]
    assert [s.parent_message_id for s in starts] == texts[:2]  # the text before each call
    args = [json.loads(e.delta) for e in events if e.type == "TOOL_CALL_ARGS"]
    assert args == [{"i": 2}, {"i": 4}]
    results = [e for e in events if e.type == "TOOL_CALL_RESULT"]
    assert [r.tool_call_id for r in results] == [s.tool_call_id for s in starts]
    assert json.loads(results[1].content) == {"i": 4, "square": 16}
    assert events[-1].type == "RUN_FINISHED"
    assert events[-1].outcome.type == "success"
    assert all(isinstance(e.timestamp, int) for e in events)


def test_thread_keeps_its_conversation_and_input_reaches_the_agent(
    server: ServerProcess,
) -> None:
    run(server, run_input("thread-2", "tokens=2"))
    events = run(server, run_input("thread-2", "echo=1 tokens=0"))
    check_order(events)
    text = "".join(e.delta for e in events if e.type == "TEXT_MESSAGE_CONTENT")
    seen = json.loads(text)
    assert seen["config"] == {"model": "small"}
    assert seen["metadata"]["run_id"] == "run-thread-2"
    assert seen["metadata"]["state"] == {"step": 1}
    assert seen["metadata"]["context"] == [{"description": "page", "value": "/home"}]
    session = httpx.get(server.base_url + "/api/sessions/thread-2").json()
    assert [m["role"] for m in session["messages"]] == ["user", "assistant"] * 2


def test_agent_failure_ends_with_run_error(server: ServerProcess) -> None:
    events = run(server, run_input("thread-3", "fail=1 tokens=1"))
    check_order(events)
    assert events[-1].type == "RUN_ERROR"
    assert events[-1].message == "agent failed on purpose"
    failed = [e for e in events if e.type == "TOOL_CALL_RESULT"]
    assert failed[0].content.startswith("error: ValueError: tool blew up")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"threadId": "no spaces"}, "invalid threadId"),
        ({"runId": ""}, "invalid runId"),
        ({"messages": []}, "non-empty array"),
        ({"messages": [{"id": "a", "role": "assistant", "content": "x"}]}, "role 'user'"),
        ({"messages": [{"id": "a", "role": "user", "content": " "}]}, "non-whitespace"),
        ({"forwardedProps": [1]}, "invalid forwardedProps"),
        ({"surprise": 1}, "unknown field"),
    ],
)
def test_bad_input_is_400_and_starts_nothing(
    server: ServerProcess, change: dict[str, Any], needle: str
) -> None:
    body = {**run_input("thread-bad", "tokens=1"), **change}
    r = httpx.post(server.base_url + "/api/agui", json=body, timeout=30)
    assert r.status_code == 400, r.text
    assert needle in r.json()["detail"]
    assert httpx.get(server.base_url + "/api/sessions/thread-bad").status_code == 404
