"""The Vercel AI SDK endpoints against a real ``runtime serve`` (uvicorn) process on
127.0.0.1, consumed by the real ``ai`` npm package in Node (``chat_client.mjs``:
``AbstractChat``, the class behind ``useChat``, over ``DefaultChatTransport``;
``readUIMessageStream``; ``validateUIMessages``), plus the raw wire format with httpx.

Needs node and ``npm ci`` in this folder: skipped with the fix in the reason on a
developer machine, failed when ``CI=true`` (``.ci/run`` installs both).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "http"))

from sse_helpers import ServerProcess, free_port  # noqa: E402

AGENT = f"{HERE / 'chat_agents.py'}:agent"
ORIGIN = "http://ui.test"


def _node() -> str:
    node = shutil.which("node")
    problems = []
    if node is None:
        problems.append("node is missing: apt-get install -y nodejs npm")
    for package in ("ai", "@ag-ui/client"):
        if not (HERE / "node_modules" / package).is_dir():
            problems.append(f"{package} is not installed: npm ci --prefix {HERE}")
    if problems:
        reason = "chat client test cannot run: " + "; ".join(problems)
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    assert node is not None
    return node


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("ai_sdk")
    proc = ServerProcess(
        tmp / "store",
        free_port(),
        tmp / "server.log",
        "--heartbeat",
        "0.5",
        "--cors-origin",
        ORIGIN,
        agent=AGENT,
    )
    proc.start()
    yield proc
    proc.kill()


def run_client(server: ServerProcess, scenario: str, chat_id: str, text: str = "") -> Any:
    done = subprocess.run(
        [_node(), str(HERE / "chat_client.mjs"), scenario, server.base_url, chat_id, text],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{done.stderr}\n--- server log:\n{server.output()}"
    return json.loads(done.stdout)


def chunks_of(body: str) -> list[Any]:
    """The ``data:`` payloads of an SSE body: JSON chunks, and ``"[DONE]"``."""
    out: list[Any] = []
    for line in body.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def user_message(text: str) -> dict[str, Any]:
    return {"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}


def post_chat(server: ServerProcess, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.base_url + "/api/chat", json=body, timeout=60)


def test_use_chat_streams_text_reasoning_and_tool_calls(server: ServerProcess) -> None:
    out = run_client(server, "send", "chat-send", "reason=1 tokens=8 tool_every=4")
    assert out["status"] == "ready"
    assert out["errors"] == []
    assert out["finishes"] == [{"isAbort": False, "isError": False, "finishReason": "stop"}]
    user, assistant = out["messages"]
    assert user["role"] == "user"
    assert assistant["role"] == "assistant"
    parts = assistant["parts"]
    assert (parts[0]["type"], parts[0]["text"], parts[0]["state"]) == (
        "reasoning",
        "thinking hard",
        "done",
    )
    texts = [p["text"] for p in parts if p["type"] == "text"]
    assert texts == ["w001 w002 w003 w004 ", "w005 w006 w007 w008 "]
    tools = [p for p in parts if p["type"] == "dynamic-tool"]
    assert [(t["toolName"], t["state"], t["input"], t["output"]) for t in tools] == [
        ("count", "output-available", {"i": 4}, {"i": 4, "square": 16}),
        ("count", "output-available", {"i": 8}, {"i": 8, "square": 64}),
    ]


def test_wire_format_header_chunk_order_and_done(server: ServerProcess) -> None:
    r = post_chat(
        server,
        {
            "id": "chat-wire",
            "messages": [user_message("tokens=2 tool_every=2")],
            "trigger": "submit-message",
        },
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert r.headers["content-type"].startswith("text/event-stream")
    chunks = chunks_of(r.text)
    types = [c if c == "[DONE]" else c["type"] for c in chunks]
    assert types == [
        "start",
        "text-start",
        "text-delta",
        "text-delta",
        "text-end",
        "tool-input-available",
        "tool-output-available",
        "finish",
        "[DONE]",
    ]
    assert chunks[1]["id"] == chunks[2]["id"] == chunks[4]["id"]
    assert chunks[5]["toolCallId"] == chunks[6]["toolCallId"]


def test_resume_after_a_dropped_connection_replays_the_turn(server: ServerProcess) -> None:
    out = run_client(server, "resume", "chat-resume", "tokens=30 delay=0.05")
    before = [c["delta"] for c in out["before"] if c["type"] == "text-delta"]
    assert len(before) >= 5
    assert out["status"] == "ready"
    assert out["errors"] == []
    assert out["finishes"][0]["finishReason"] == "stop"
    text = "".join(p["text"] for p in out["messages"][-1]["parts"] if p["type"] == "text")
    expected = "".join(f"w{i:03d} " for i in range(1, 31))
    assert text == expected  # every token once: the drop did not cancel the turn
    assert text.startswith("".join(before))
    assert out["second"] == {"status": "ready", "messages": 2}  # 204: nothing active


def test_stop_route_cancels_the_turn_and_the_stream_ends_with_abort(
    server: ServerProcess,
) -> None:
    out = run_client(server, "stop", "chat-stop", "tokens=200 delay=0.05")
    assert out["stop"]["cancelled"] is True
    types = [c["type"] for c in out["chunks"]]
    assert types[-2:] == ["text-end", "abort"]
    assert "finish" not in types
    text = out["message"]["parts"][0]["text"]
    assert 3 <= len(text.split()) < 200
    # The partial answer was kept by the runtime, marked partial.
    session = httpx.get(server.base_url + "/api/sessions/chat-stop").json()
    assert any(m.get("_partial") for m in session["messages"])


def test_reload_gives_ui_messages_the_sdk_validates(server: ServerProcess) -> None:
    run_client(server, "send", "chat-reload", "tokens=4 tool_every=2")
    run_client(server, "send", "chat-reload", "fail=1 tokens=1")
    out = run_client(server, "reload", "chat-reload")
    assert out["status"] == 200
    roles = [m["role"] for m in out["messages"]]
    assert roles == ["user", "assistant", "user", "assistant"]
    first = out["messages"][1]["parts"]
    assert [p["type"] for p in first] == ["text", "dynamic-tool", "text", "dynamic-tool"]
    assert first[1]["output"] == {"i": 2, "square": 4}
    failed = out["messages"][3]["parts"]
    explode = next(p for p in failed if p["type"] == "dynamic-tool")
    assert explode["state"] == "output-error"
    assert "tool blew up" in explode["errorText"]


def test_agent_error_reaches_use_chat_as_an_error(server: ServerProcess) -> None:
    out = run_client(server, "send", "chat-error", "fail=1 tokens=2")
    assert out["status"] == "error"
    assert any("agent failed on purpose" in e for e in out["errors"])
    parts = out["messages"][-1]["parts"]
    explode = next(p for p in parts if p["type"] == "dynamic-tool")
    assert explode["state"] == "output-error"


def test_metadata_and_config_reach_the_agent(server: ServerProcess) -> None:
    r = post_chat(
        server,
        {
            "id": "chat-meta",
            "messages": [user_message("echo=1 tokens=0")],
            "metadata": {"user": "ada"},
            "config": {"model": "small"},
        },
    )
    text = "".join(c["delta"] for c in chunks_of(r.text) if c != "[DONE]" and "delta" in c)
    assert json.loads(text) == {"metadata": {"user": "ada"}, "config": {"model": "small"}}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"id": "bad id!", "messages": [user_message("x")]}, "invalid id"),
        ({"id": "ok", "messages": []}, "non-empty array"),
        ({"id": "ok", "messages": [{"role": "assistant", "parts": []}]}, "role 'user'"),
        ({"id": "ok", "messages": [user_message("  ")]}, "non-whitespace"),
        ({"id": "ok", "messages": [user_message("x")], "trigger": "nope"}, "invalid trigger"),
        ({"id": "ok", "messages": [user_message("x")], "metadata": [1]}, "invalid metadata"),
        ({"id": "ok", "messages": [user_message("x")], "extra": 1}, "unknown field"),
    ],
)
def test_bad_requests_are_400_and_start_nothing(
    server: ServerProcess, body: dict[str, Any], needle: str
) -> None:
    r = post_chat(server, body)
    assert r.status_code == 400, r.text
    assert needle in r.json()["detail"]
    assert httpx.get(server.base_url + "/api/sessions/ok").status_code == 404


def test_regenerate_and_edit_rewind_the_stored_chat(server: ServerProcess) -> None:
    """``chat.regenerate()`` and ``chat.sendMessage({text, messageId})`` drop messages on
    the client; the stored chat drops the same ones, so a reload shows what the client
    shows and the agent answers from the rewound history (``h<N>``: the messages it saw)."""
    out = run_client(server, "rewrite", "chat-rewrite", "history=1 tokens=1")
    assert out["errors"] == [] and out["status"] == "ready"
    assert len(out["finishes"]) == 4
    for step in ("before", "regenerated", "edited"):
        assert out[step]["client"] == out[step]["stored"], step
    before, regenerated = out["before"]["client"], out["regenerated"]["client"]
    assert [m["role"] for m in regenerated] == ["user", "assistant"] * 2
    assert regenerated[:3] == before[:3]
    assert regenerated[3]["text"].startswith("h2 ")  # not h4: the old answer is gone
    assert regenerated[3]["text"] != before[3]["text"]
    edited = out["edited"]["client"]
    assert (edited[0]["role"], edited[0]["text"]) == ("user", "history=1 tokens=1 edited")
    assert [m["role"] for m in edited] == ["user", "assistant"]
    assert edited[1]["text"].startswith("h0 ")


def test_regenerate_that_does_not_line_up_is_409_and_drops_nothing(
    server: ServerProcess,
) -> None:
    base = server.base_url
    r = post_chat(server, {"id": "chat-mismatch", "messages": [user_message("tokens=2")]})
    assert r.status_code == 200
    stored = httpx.get(base + "/api/chat/chat-mismatch").json()["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant"]
    # one UI message kept before the user message: the chat's UI message 1 is the answer
    body = {
        "id": "chat-mismatch",
        "messages": [stored[0], user_message("tokens=2")],
        "trigger": "regenerate-message",
    }
    r = post_chat(server, body)
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "history_mismatch"
    assert "reload" in r.json()["detail"]
    assert httpx.get(base + "/api/chat/chat-mismatch").json()["messages"] == stored


def test_busy_chat_is_409_and_idle_or_unknown_chat_resumes_with_204(
    server: ServerProcess,
) -> None:
    base = server.base_url
    assert httpx.get(base + "/api/chat/never-used/stream").status_code == 204
    with httpx.Client(base_url=base, timeout=60) as client:
        body = {"id": "chat-busy", "messages": [user_message("tokens=100 delay=0.02")]}
        with client.stream("POST", "/api/chat", json=body) as first:
            assert first.status_code == 200
            second = client.post("/api/chat", json=body)
            assert second.status_code == 409
            assert second.json()["error"] == "session_busy"
            assert client.post("/api/chat/chat-busy/stop").json()["cancelled"] is True
            assert chunks_of(first.read().decode())[-2:] == [
                {"type": "abort", "reason": "cancelled"},
                "[DONE]",
            ]
        assert client.get("/api/chat/chat-busy/stream").status_code == 204


def test_cors_preflight_for_a_configured_origin(server: ServerProcess) -> None:
    headers = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    ok = httpx.options(
        server.base_url + "/api/chat",
        headers={**headers, "Access-Control-Request-Headers": "content-type"},
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in ok.headers["access-control-allow-methods"]
    other = httpx.options(
        server.base_url + "/api/chat", headers={**headers, "Origin": "http://evil.test"}
    )
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    r = post_chat(server, {"id": "chat-cors", "messages": [user_message("tokens=1")]})
    assert "access-control-allow-origin" not in r.headers  # no Origin, no CORS headers
    r = httpx.post(
        server.base_url + "/api/chat",
        json={"id": "chat-cors", "messages": [user_message("tokens=1")]},
        headers={"Origin": ORIGIN},
    )
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "x-vercel-ai-ui-message-stream" in r.headers["access-control-expose-headers"]
