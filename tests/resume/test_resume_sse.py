"""An SSE client follows a turn across a SIGKILL of its ``runtime serve`` process: it
reconnects with ``Last-Event-ID`` to the restarted server (``--resume auto``) and sees
every seq once, a ``stream.resumed`` that declares the gap, and the turn's end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
from httpx_sse import connect_sse

from .helpers import env, free_port, kill, lines, serve

Event = dict[str, Any]


def _follow(client: httpx.Client, url: str, last_id: int, out: list[Event], stop: Any) -> None:
    headers = {"Last-Event-ID": str(last_id)} if last_id else {}
    try:
        with connect_sse(client, "GET", url, headers=headers) as source:
            assert source.response.status_code == 200, source.response.read()
            for sse in source.iter_sse():
                if not sse.data:
                    continue
                event: Event = orjson.loads(sse.data)
                assert sse.id == str(event["seq"])
                out.append(event)
                stop(event)
    except (httpx.RemoteProtocolError, httpx.ReadError):
        pass  # the server was killed mid-response


def test_sse_client_follows_across_a_crash_and_sees_each_seq_once(tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    environ = env(RESUME_SIDE_EFFECTS=str(effects), RESUME_STEPS="12", RESUME_STEP_DELAY="0.3")
    store = tmp_path / "store"
    port = free_port()
    server = serve(store, "tests/resume/agents.py:steps", port, tmp_path / "a.log", environ)
    base = f"http://127.0.0.1:{port}"
    seen: list[Event] = []
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            sid = client.post("/api/sessions").json()["session_id"]
            started = client.post(f"/api/sessions/{sid}/turns", json={"message": "count"})
            assert started.status_code == 202
            stream_id = started.json()["stream_id"]
            url = f"/api/streams/{stream_id}/events"

            def crash_at_step_5(event: Event) -> None:
                if event["type"] == "tool.completed" and event["data"]["call_id"] == "step-5":
                    kill(server)

            _follow(client, url, 0, seen, crash_at_step_5)
    finally:
        if server.poll() is None:
            kill(server)
    assert any(e["data"].get("call_id") == "step-5" for e in seen)
    last = seen[-1]["seq"]

    server = serve(store, "tests/resume/agents.py:steps", port, tmp_path / "b.log", environ)
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            after: list[Event] = []
            _follow(client, url, last, after, lambda e: None)
            status = client.get(f"/api/sessions/{sid}/status").json()
            session = client.get(f"/api/sessions/{sid}").json()
    finally:
        kill(server)

    seqs = [e["seq"] for e in seen + after]
    assert seqs == sorted(set(seqs)), "a seq was sent twice or out of order"
    resumed = [e for e in after if e["type"] == "stream.resumed"]
    assert len(resumed) == 1
    mark = resumed[0]
    assert mark["data"]["attempt"] == 1
    assert mark["data"]["last_durable_seq"] <= last < mark["seq"]
    assert mark["data"]["disregard_after"] <= mark["data"]["last_durable_seq"]
    # the only jump in seq is the void the stream.resumed event declares
    for prev, event in zip(seen + after, (seen + after)[1:], strict=False):
        if event["seq"] != prev["seq"] + 1:
            assert event is mark
    assert after[-1]["type"] == "stream.end" and after[-1]["data"]["outcome"] == "done"
    assert after[-2]["type"] == "done"
    # every step ran exactly once, and the client saw each step complete
    assert lines(effects) == [f"step-{i}" for i in range(1, 13)]
    completed = {e["data"]["call_id"] for e in seen + after if e["type"] == "tool.completed"}
    assert completed == {f"step-{i}" for i in range(1, 13)}
    assert status["active_stream_id"] is None and status["interrupted"] is None
    assert session["messages"][-1]["content"].endswith(f"total: {sum(i * i for i in range(1, 13))}")
