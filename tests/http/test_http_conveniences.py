"""HTTP conveniences front ends expect: client-chosen session ids, per-turn
``metadata``/``config`` reaching the agent, send-and-stream in one request, rename,
a session's list of streams, and CORS for configured origins (ASGI in process)."""

from __future__ import annotations

import json

import anyio
import pytest
from sse_helpers import events_of, open_app

from runtime import MemoryStore, Runtime, Turn
from runtime.asgi import create_app


async def echo_agent(turn: Turn) -> None:
    """Replies with the turn's metadata and config as JSON."""
    await turn.reply(json.dumps({"metadata": turn.metadata, "config": turn.config}))


async def test_client_chosen_session_id() -> None:
    async with open_app(echo_agent) as s:
        r = await s.client.post("/api/sessions", json={"session_id": "my-chat", "title": "Mine"})
        assert r.status_code == 201, r.text
        assert r.json()["session_id"] == "my-chat"
        assert r.headers["location"] == "/api/sessions/my-chat"
        turn = await s.client.post("/api/sessions/my-chat/turns", json={"message": "hi"})
        await s.runtime.wait_stream(turn.json()["stream_id"])
        again = await s.client.post("/api/sessions", json={"session_id": "my-chat"})
        assert again.status_code == 409
        assert again.json()["error"] == "session_exists"
        assert (await s.client.get("/api/sessions/my-chat")).json()["title"] == "Mine"
        bad = await s.client.post("/api/sessions", json={"session_id": "../etc"})
        assert bad.status_code == 400
        assert "[A-Za-z0-9_-]{1,64}" in bad.json()["detail"]


async def test_metadata_and_config_reach_the_agent_and_metadata_is_recorded() -> None:
    async with open_app(echo_agent) as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        body = {"message": "hi", "metadata": {"user": "ada"}, "config": {"model": "m"}}
        r = await s.client.post(f"/api/sessions/{sid}/turns", json=body)
        assert r.status_code == 202, r.text
        stream_id = r.json()["stream_id"]
        await s.runtime.wait_stream(stream_id)
        session = (await s.client.get(f"/api/sessions/{sid}")).json()
        assert json.loads(session["messages"][-1]["content"]) == {
            "metadata": {"user": "ada"},
            "config": {"model": "m"},
        }
        events = events_of((await s.client.get(f"/api/streams/{stream_id}/events")).text)
        assert events[0]["data"]["metadata"] == {"user": "ada"}
        assert "config" not in events[0]["data"]


@pytest.mark.parametrize("field", ["metadata", "config"])
async def test_metadata_or_config_of_the_wrong_type_is_400(field: str) -> None:
    async with open_app(echo_agent) as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        r = await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "x", field: "no"})
        assert r.status_code == 400
        assert f"invalid {field} 'no'" in r.json()["detail"]
        assert (await s.client.get(f"/api/sessions/{sid}/status")).json()[
            "active_stream_id"
        ] is None


async def test_send_and_stream_in_one_request() -> None:
    async with open_app() as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        r = await s.client.post(
            f"/api/sessions/{sid}/turns",
            json={"message": "hi"},
            headers={"Accept": "text/event-stream"},
        )
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = events_of(r.text)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[0]["type"] == "stream.started"
        assert [e["type"] for e in events[-2:]] == ["done", "stream.end"]
        text = "".join(e["data"]["text"] for e in events if e["type"] == "token")
        assert text == "Hello, world!"


async def test_rename_and_busy_rename_is_409() -> None:
    release = anyio.Event()

    async def waiting(turn: Turn) -> None:
        await release.wait()
        await turn.reply("ok")

    async with open_app(waiting) as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        r = await s.client.patch(f"/api/sessions/{sid}", json={"title": "Renamed"})
        assert r.status_code == 200, r.text
        assert r.json()["title"] == "Renamed"
        assert (await s.client.get("/api/sessions")).json()["sessions"][0]["title"] == "Renamed"
        turn = await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "x"})
        busy = await s.client.patch(f"/api/sessions/{sid}", json={"title": "Other"})
        assert busy.status_code == 409
        assert busy.json()["active_stream_id"] == turn.json()["stream_id"]
        release.set()
        await s.runtime.wait_stream(turn.json()["stream_id"])
        assert (await s.client.get(f"/api/sessions/{sid}")).json()["title"] == "Renamed"
        for body in ({"title": "  "}, {"title": 3}, {}, {"name": "x"}):
            bad = await s.client.patch(f"/api/sessions/{sid}", json=body)
            assert bad.status_code == 400, body
        missing = await s.client.patch("/api/sessions/nope", json={"title": "t"})
        assert missing.status_code == 404


async def test_a_sessions_streams_are_listed_oldest_first() -> None:
    async with open_app(echo_agent) as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        ids = []
        for text in ("first", "second"):
            r = await s.client.post(f"/api/sessions/{sid}/turns", json={"message": text})
            ids.append(r.json()["stream_id"])
            await s.runtime.wait_stream(ids[-1])
        streams = (await s.client.get(f"/api/sessions/{sid}/streams")).json()["streams"]
        assert [x["stream_id"] for x in streams] == ids
        assert [x["user_message"] for x in streams] == ["first", "second"]
        assert all(isinstance(x["started_at"], float) and x["live"] is False for x in streams)
        replay = events_of((await s.client.get(f"/api/streams/{ids[0]}/events")).text)
        assert replay[0]["data"]["user_message"] == "first"
        assert (await s.client.get("/api/sessions/nope/streams")).status_code == 404


async def test_cors_preflight_and_headers_for_configured_origins_only() -> None:
    async with open_app(cors_origins=["https://app.example"]) as s:
        pre = await s.client.options(
            "/api/sessions",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, authorization",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://app.example"
        assert pre.headers["access-control-allow-credentials"] == "true"
        r = await s.client.get("/api/sessions", headers={"Origin": "https://app.example"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        other = await s.client.get("/api/sessions", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(
    "origins", [["app.example"], ["https://app.example/path"], "https://a.example", [3]]
)
def test_bad_cors_origins_are_refused(origins: object) -> None:
    rt = Runtime(MemoryStore(), echo_agent)
    with pytest.raises(ValueError, match="invalid"):
        create_app(rt, cors_origins=origins)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/chat", {"id": "c1", "messages": [{"role": "user", "parts": []}]}),
        ("GET", "/api/chat/c1/stream", None),
        ("POST", "/api/chat/c1/stop", None),
        ("GET", "/api/chat/c1", None),
        ("POST", "/api/agui", {"threadId": "t1", "runId": "r", "messages": []}),
        ("GET", "/api/sessions/s1/streams", None),
        ("PATCH", "/api/sessions/s1", {"title": "x"}),
    ],
)
async def test_new_routes_require_the_token(method: str, path: str, body: object) -> None:
    async with open_app(echo_agent, api_token="s3cret") as s:
        r = await s.client.request(method, path, json=body)
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert await s.store.exists("c1") is False
        assert await s.store.exists("t1") is False


async def test_runtime_refuses_metadata_json_cannot_carry_and_bad_titles() -> None:
    async with Runtime(MemoryStore(), echo_agent) as rt:
        session = rt.new_session()
        with pytest.raises(TypeError, match="metadata"):
            await rt.start_turn(session.session_id, "x", metadata={"when": object()})
        with pytest.raises(ValueError, match="invalid config"):
            await rt.start_turn(session.session_id, "x", config=["no"])  # type: ignore[arg-type]
        assert (await rt.session_status(session.session_id))["active_stream_id"] is None
        stream_id = await rt.start_turn(session.session_id, "x")
        await rt.wait_stream(stream_id)
        for bad in ("", "a\nb", "x" * 201):
            with pytest.raises(ValueError, match="invalid title"):
                await rt.rename_session(session.session_id, bad)
        renamed = await rt.rename_session(session.session_id, "Fine")
        assert renamed.title == "Fine"


@pytest.mark.parametrize("trigger", [{}, [], "send", 3])
async def test_chat_refuses_a_bad_trigger_naming_it(trigger: object) -> None:
    """Found by the schemathesis run: an object as ``trigger`` was a 500 (unhashable)."""
    async with open_app(echo_agent) as s:
        body = {"id": "c1", "trigger": trigger, "messages": [{"role": "user", "parts": []}]}
        r = await s.client.post("/api/chat", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "invalid_body"
        assert f"invalid trigger {trigger!r}" in r.json()["detail"]
        assert await s.store.exists("c1") is False
