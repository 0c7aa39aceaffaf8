"""The JSON routes of ``runtime.asgi`` over httpx's ASGITransport: every route and
every error status (400, 401, 404, 405, 409, 413), with a MemoryStore or a FileStore."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from sse_helpers import REPO, open_app

from runtime import Event, FileStore, MemoryStore, Runtime, Session
from runtime.asgi import create_app
from runtime.testing import Notify, Reply, Tool, WaitFor, scripted_agent

SESSION_FIELDS = {
    "session_id",
    "title",
    "model",
    "model_provider",
    "workspace",
    "created_at",
    "updated_at",
    "active_stream_id",
    "pending_user_message",
    "pending_started_at",
    "metadata",
    "message_count",
}


def assert_error(response: Any, status: int, code: str, *mentions: str) -> dict[str, Any]:
    """A JSON error ``{"error": code, "detail": ...}`` whose detail names ``mentions``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["error"] == code, body
    assert isinstance(body["detail"], str), body
    assert body["detail"], body
    for text in mentions:
        assert text in body["detail"], (text, body)
    return body


def gated_agent() -> tuple[Any, anyio.Event, anyio.Event]:
    """An agent that streams a token, tells the test, and waits for the test's go."""
    reached, go = anyio.Event(), anyio.Event()
    agent = scripted_agent(["partial ", Notify(reached), WaitFor(go), Reply("done")])
    return agent, reached, go


# -- sessions ------------------------------------------------------------------------------


async def test_create_session_is_fetchable_but_not_listed_until_first_turn() -> None:
    async with open_app() as s:
        r = await s.client.post("/api/sessions", json={"title": "survey"})
        assert r.status_code == 201
        body = r.json()
        assert set(body) >= SESSION_FIELDS
        assert body["title"] == "survey"
        assert body["messages"] == []
        assert body["message_count"] == 0
        sid = body["session_id"]
        assert r.headers["location"] == f"/api/sessions/{sid}"
        got = await s.client.get(f"/api/sessions/{sid}")
        assert got.status_code == 200
        assert got.json()["session_id"] == sid
        assert isinstance(s.store, MemoryStore)
        assert sid not in s.store.sessions
        # An empty Untitled session is hidden from the list; a titled one is not stored yet.
        untitled = (await s.client.post("/api/sessions")).json()["session_id"]
        listed = (await s.client.get("/api/sessions")).json()
        assert listed == {"sessions": [], "next_cursor": None}
        r = await s.client.post(f"/api/sessions/{untitled}/turns", json={"message": "hi"})
        assert r.status_code == 202
        await s.runtime.wait_stream(r.json()["stream_id"])
        listed = (await s.client.get("/api/sessions")).json()
        assert [x["session_id"] for x in listed["sessions"]] == [untitled]
        assert "messages" not in listed["sessions"][0]


@pytest.mark.parametrize(
    ("body", "mention"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "array"),
        (b'"title"', "string"),
        (b'{"title": ""}', "title"),
        (b'{"title": "   "}', "title"),
        (b'{"title": 5}', "title"),
        (b'{"title": "x", "owner": "me"}', "'owner'"),
    ],
)
async def test_create_session_bad_body_is_400(body: bytes, mention: str) -> None:
    async with open_app() as s:
        r = await s.client.post(
            "/api/sessions", content=body, headers={"content-type": "application/json"}
        )
        assert_error(r, 400, "invalid_body", mention)


async def test_body_over_one_mebibyte_is_413() -> None:
    async with open_app() as s:
        big = b'{"title": "' + b"x" * (1 << 20) + b'"}'
        r = await s.client.post("/api/sessions", content=big)
        assert_error(r, 413, "body_too_large")


async def test_list_sessions_paginates_with_cursor(tmp_path: Path) -> None:
    async with open_app(store=FileStore(tmp_path)) as s:
        ids = []
        for i in range(3):
            sid = (await s.client.post("/api/sessions", json={"title": f"t{i}"})).json()[
                "session_id"
            ]
            r = await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "go"})
            await s.runtime.wait_stream(r.json()["stream_id"])
            ids.append(sid)
        first = (await s.client.get("/api/sessions", params={"limit": "2"})).json()
        assert len(first["sessions"]) == 2
        assert first["next_cursor"]
        second = (
            await s.client.get(
                "/api/sessions", params={"limit": "2", "cursor": first["next_cursor"]}
            )
        ).json()
        assert second["next_cursor"] is None
        seen = [x["session_id"] for x in first["sessions"] + second["sessions"]]
        assert sorted(seen) == sorted(ids)
        assert len(set(seen)) == 3
        # newest first
        assert seen == list(reversed(ids))


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "1001", "2.5", ""])
async def test_list_bad_limit_is_400(limit: str) -> None:
    async with open_app() as s:
        r = await s.client.get("/api/sessions", params={"limit": limit})
        assert_error(r, 400, "invalid_limit", repr(limit))


@pytest.mark.parametrize("cursor", ["garbage", "eyJ4IjogMX0=", "W10="])
async def test_list_bad_cursor_is_400(cursor: str) -> None:
    async with open_app() as s:
        r = await s.client.get("/api/sessions", params={"cursor": cursor})
        assert_error(r, 400, "invalid_cursor", cursor)


async def test_get_session_full_and_metadata_only() -> None:
    async with open_app() as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        r = await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "hi"})
        await s.runtime.wait_stream(r.json()["stream_id"])
        full = (await s.client.get(f"/api/sessions/{sid}")).json()
        assert [m["role"] for m in full["messages"]] == ["user", "assistant"]
        assert full["messages"][1]["content"] == "Hello, world!"
        for flag in ("1", "true"):
            meta = (await s.client.get(f"/api/sessions/{sid}?metadata_only={flag}")).json()
            assert "messages" not in meta
            assert meta["message_count"] == 2
        assert "messages" in (await s.client.get(f"/api/sessions/{sid}?metadata_only=0")).json()
        r = await s.client.get(f"/api/sessions/{sid}?metadata_only=maybe")
        assert_error(r, 400, "invalid_metadata_only", "'maybe'")


BAD_IDS = ["has space", "dot.dot", "x" * 65, "semi;colon", "%C3%A9t%C3%A9"]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("GET", "/status", None),
        ("DELETE", "", None),
        ("POST", "/turns", {"message": "hi"}),
    ],
)
async def test_invalid_session_id_is_400(
    bad: str, method: str, suffix: str, body: dict[str, str] | None
) -> None:
    async with open_app() as s:
        r = await s.client.request(method, f"/api/sessions/{bad}{suffix}", json=body)
        assert_error(r, 400, "invalid_session_id", "[A-Za-z0-9_-]{1,64}")


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("GET", "/status", None),
        ("DELETE", "", None),
        ("POST", "/turns", {"message": "hi"}),
    ],
)
async def test_unknown_session_is_404(method: str, suffix: str, body: Any) -> None:
    async with open_app() as s:
        r = await s.client.request(method, f"/api/sessions/nosuchsession{suffix}", json=body)
        assert_error(r, 404, "session_not_found", "nosuchsession")


async def test_get_session_repairs_a_stale_stream_through_a_full_load() -> None:
    """A session left mid-stream by a dead process is repaired when read."""
    store = MemoryStore()
    await store.open()
    old = time.time() - 3600
    session = Session(
        "stale1",
        title="left behind",
        messages=[
            {"role": "user", "content": "earlier", "timestamp": old - 10},
            {"role": "assistant", "content": "answer", "timestamp": old - 5},
        ],
        active_stream_id=f"{'a' * 16}.stale1",
        pending_user_message="lost question",
        pending_started_at=old,
    )
    await store.save(session)
    async with open_app(store=store) as s:
        status = (await s.client.get("/api/sessions/stale1/status")).json()
        assert status == {
            "active_stream_id": None,
            "live": False,
            "pending_user_message": None,
            "pending_started_at": None,
            "interrupted": None,
        }
        body = (await s.client.get("/api/sessions/stale1")).json()
        assert body["active_stream_id"] is None
        messages = body["messages"]
        assert [m["content"] for m in messages[:2]] == ["earlier", "answer"]  # nothing lost
        assert messages[2]["role"] == "user"
        assert messages[2]["content"] == "lost question"
        assert messages[-1]["type"] == "interrupted"
        assert messages[-1]["_error"] is True


# -- turns, status, cancel, delete ---------------------------------------------------------------


async def test_turn_202_then_busy_409_with_active_stream_id() -> None:
    agent, reached, go = gated_agent()
    async with open_app(agent) as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        before = time.time()
        r = await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "first"})
        assert r.status_code == 202
        started = r.json()
        assert set(started) == {"stream_id", "session_id", "pending_started_at"}
        assert started["session_id"] == sid
        assert started["pending_started_at"] >= before
        stream_id = started["stream_id"]
        assert r.headers["location"] == f"/api/streams/{stream_id}/events"
        await reached.wait()
        status = (await s.client.get(f"/api/sessions/{sid}/status")).json()
        assert status == {
            "active_stream_id": stream_id,
            "live": True,
            "pending_user_message": "first",
            "pending_started_at": started["pending_started_at"],
            "interrupted": None,
        }
        busy = await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "second"})
        body = assert_error(busy, 409, "session_busy", stream_id)
        assert body["active_stream_id"] == stream_id
        deleting = await s.client.delete(f"/api/sessions/{sid}")
        assert assert_error(deleting, 409, "session_busy")["active_stream_id"] == stream_id
        go.set()
        await s.runtime.wait_stream(stream_id)
        status = (await s.client.get(f"/api/sessions/{sid}/status")).json()
        assert status["active_stream_id"] is None
        assert status["live"] is False
        again = await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "second"})
        assert again.status_code == 202


async def test_turn_rewind_to_drops_the_later_messages_or_is_409() -> None:
    async with open_app() as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        for text in ("first", "second"):
            r = await s.client.post(f"/api/sessions/{sid}/turns", json={"message": text})
            await s.runtime.wait_stream(r.json()["stream_id"])
        stored = (await s.client.get(f"/api/sessions/{sid}")).json()["messages"]
        assert [m["role"] for m in stored] == ["user", "assistant"] * 2
        too_far = await s.client.post(
            f"/api/sessions/{sid}/turns", json={"message": "again", "rewind_to": 5}
        )
        assert assert_error(too_far, 409, "history_mismatch", "4 messages")["session_id"] == sid
        negative = await s.client.post(
            f"/api/sessions/{sid}/turns", json={"message": "again", "rewind_to": -1}
        )
        assert_error(negative, 400, "invalid_body", "rewind_to")
        assert (await s.client.get(f"/api/sessions/{sid}")).json()["messages"] == stored
        r = await s.client.post(
            f"/api/sessions/{sid}/turns", json={"message": "second, again", "rewind_to": 2}
        )
        assert r.status_code == 202
        await s.runtime.wait_stream(r.json()["stream_id"])
        after = (await s.client.get(f"/api/sessions/{sid}")).json()["messages"]
        assert after[:2] == stored[:2]
        assert [(m["role"], m["content"]) for m in after[2:3]] == [("user", "second, again")]
        assert len(after) == 4


@pytest.mark.parametrize(
    ("body", "mention"),
    [
        (b"", "empty"),
        (b"{}", "'message'"),
        (b'{"message": ""}', "''"),
        (b'{"message": "  \\n\\t "}', "non-whitespace"),
        (b'{"message": 42}', "42"),
        (b'{"message": null}', "None"),
        (b'{"message": ["a"]}', "['a']"),
        (b'{"message": "hi", "extra": 1}', "'extra'"),
        (b"[]", "array"),
        (b"nope", "not valid JSON"),
    ],
)
async def test_turn_bad_message_is_400_and_writes_nothing(body: bytes, mention: str) -> None:
    async with open_app() as s:
        sid = (await s.client.post("/api/sessions", json={"title": "kept"})).json()["session_id"]
        r = await s.client.post(
            f"/api/sessions/{sid}/turns", content=body, headers={"content-type": "application/json"}
        )
        assert_error(r, 400, "invalid_body", mention)
        assert isinstance(s.store, MemoryStore)
        assert sid not in s.store.sessions
        status = (await s.client.get(f"/api/sessions/{sid}/status")).json()
        assert status["active_stream_id"] is None


async def test_cancel_live_turn_keeps_partial_output() -> None:
    agent, reached, _go = gated_agent()
    async with open_app(agent) as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        stream_id = (
            await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "q"})
        ).json()["stream_id"]
        await reached.wait()
        r = await s.client.post(f"/api/streams/{stream_id}/cancel")
        assert r.status_code == 200
        assert r.json() == {"stream_id": stream_id, "session_id": sid, "cancelled": True}
        messages = (await s.client.get(f"/api/sessions/{sid}")).json()["messages"]
        assert messages[0]["content"] == "q"
        assert [m["content"] for m in messages if m.get("_partial")] == ["partial "]
        assert sum(1 for m in messages if m.get("type") == "cancelled") == 1
        events = (await s.client.get(f"/api/streams/{stream_id}/events")).text
        assert "event: cancelled" in events
        assert events.rstrip().endswith("}")
        # Cancelling again: the stream exists but is over.
        r = await s.client.post(f"/api/streams/{stream_id}/cancel")
        assert r.json()["cancelled"] is False


@pytest.mark.parametrize(
    ("stream_id", "status", "code"),
    [
        (f"{'0' * 16}.nosuchsession", 404, "stream_not_found"),
        ("not-a-runtime-stream", 404, "stream_not_found"),
        ("bad%20id", 400, "invalid_stream_id"),
        ("x" * 129, 400, "invalid_stream_id"),
    ],
)
async def test_cancel_unknown_or_invalid_stream(stream_id: str, status: int, code: str) -> None:
    async with open_app() as s:
        r = await s.client.post(f"/api/streams/{stream_id}/cancel")
        assert_error(r, status, code)


async def test_delete_session_then_404(tmp_path: Path) -> None:
    async with open_app(store=FileStore(tmp_path)) as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        r = await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "hi"})
        await s.runtime.wait_stream(r.json()["stream_id"])
        r = await s.client.delete(f"/api/sessions/{sid}")
        assert r.status_code == 204
        assert r.content == b""
        assert_error(await s.client.get(f"/api/sessions/{sid}"), 404, "session_not_found")
        assert_error(await s.client.delete(f"/api/sessions/{sid}"), 404, "session_not_found")
        assert (await s.client.get("/api/sessions")).json()["sessions"] == []


# -- auth ------------------------------------------------------------------------------------


ROUTES = [
    ("POST", "/api/sessions"),
    ("GET", "/api/sessions"),
    ("GET", "/api/sessions/abc"),
    ("GET", "/api/sessions/abc/status"),
    ("DELETE", "/api/sessions/abc"),
    ("POST", "/api/sessions/abc/turns"),
    ("GET", f"/api/streams/{'0' * 16}.abc/events"),
    ("POST", f"/api/streams/{'0' * 16}.abc/cancel"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_api_route_requires_the_token(method: str, path: str) -> None:
    async with open_app(api_token="s3cret") as s:
        r = await s.client.request(method, path)
        assert_error(r, 401, "unauthorized", "Bearer")
        assert r.headers["www-authenticate"].startswith("Bearer")
        for header in ("Bearer wrong", "Basic s3cret", "s3cret", "Bearer "):
            r = await s.client.request(method, path, headers={"Authorization": header})
            assert_error(r, 401, "unauthorized")
        r = await s.client.request(method, path, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code != 401


async def test_query_token_only_on_the_sse_route_and_pages_stay_open() -> None:
    async with open_app(api_token="s3cret") as s:
        auth = {"Authorization": "Bearer s3cret"}
        sid = (await s.client.post("/api/sessions", headers=auth)).json()["session_id"]
        stream_id = (
            await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "x"}, headers=auth)
        ).json()["stream_id"]
        await s.runtime.wait_stream(stream_id)
        ok = await s.client.get(f"/api/streams/{stream_id}/events?token=s3cret")
        assert ok.status_code == 200
        assert "event: stream.end" in ok.text
        bad = await s.client.get(f"/api/streams/{stream_id}/events?token=nope")
        assert_error(bad, 401, "unauthorized")
        assert_error(await s.client.get("/api/sessions?token=s3cret"), 401, "unauthorized")
        assert (await s.client.get("/")).status_code == 200
        assert (await s.client.get("/openapi.json")).status_code == 200


async def test_token_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME_API_TOKEN", "from-env")
    async with open_app() as s:
        assert_error(await s.client.get("/api/sessions"), 401, "unauthorized")
        r = await s.client.get("/api/sessions", headers={"Authorization": "bearer from-env"})
        assert r.status_code == 200


async def test_explicit_token_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME_API_TOKEN", "from-env")
    async with open_app(api_token="explicit") as s:
        r = await s.client.get("/api/sessions", headers={"Authorization": "Bearer from-env"})
        assert_error(r, 401, "unauthorized")
        r = await s.client.get("/api/sessions", headers={"Authorization": "Bearer explicit"})
        assert r.status_code == 200


# -- the rest of the app -----------------------------------------------------------------------


async def test_unknown_route_and_wrong_method_are_json() -> None:
    async with open_app() as s:
        assert_error(await s.client.get("/api/nothing"), 404, "not_found", "/api/nothing")
        r = await s.client.put("/api/sessions")
        assert_error(r, 405, "method_not_allowed", "PUT")
        assert "GET" in r.headers["allow"]


async def test_demo_page_and_assets_are_served() -> None:
    async with open_app() as s:
        page = await s.client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert 'src="static/app.js"' in page.text
        for asset, kind in (("app.js", "javascript"), ("style.css", "css")):
            r = await s.client.get(f"/static/{asset}")
            assert r.status_code == 200
            assert kind in r.headers["content-type"]


@pytest.mark.parametrize(
    ("options", "mention"),
    [
        ({"api_token": ""}, "api_token"),
        ({"heartbeat": 0}, "heartbeat"),
        ({"heartbeat": float("inf")}, "heartbeat"),
        ({"retry_ms": -1}, "retry_ms"),
        ({"retry_ms": 1.5}, "retry_ms"),
    ],
)
def test_create_app_rejects_bad_options(options: dict[str, Any], mention: str) -> None:
    rt = Runtime(MemoryStore(), scripted_agent([]))
    with pytest.raises(ValueError, match=mention):
        create_app(rt, **options)


async def test_lifespan_enters_and_leaves_the_runtime() -> None:
    rt = Runtime(MemoryStore(), scripted_agent([]))
    app = create_app(rt)
    assert not rt.running
    async with app.router.lifespan_context(app):
        assert rt.running
        assert rt.recovery == {"scanned": 0, "restored": 0, "orphaned_backups": 0, "quarantined": 0}
    assert not rt.running


async def test_lifespan_leaves_an_embedded_runtime_alone() -> None:
    """When the host app entered the runtime itself, the sub-app's lifespan (e.g. run
    by a test client) neither enters it twice nor closes it."""
    rt = Runtime(MemoryStore(), scripted_agent(["x", Reply()]))
    app = create_app(rt)
    async with rt:
        async with app.router.lifespan_context(app):
            assert rt.running
        assert rt.running
        session = rt.new_session()
        stream_id = await rt.start_turn(session.session_id, "still works")
        await rt.wait_stream(stream_id)
    assert not rt.running


async def test_shutdown_gives_live_turns_the_grace_then_cancels_keeping_partial_output() -> None:
    reached = anyio.Event()
    never = anyio.Event()
    agent = scripted_agent(
        ["kept ", Tool("t", {}, result=1), Notify(reached), WaitFor(never), Reply("lost")]
    )
    store = MemoryStore()
    rt = Runtime(store, agent, shutdown_grace=0.05)
    app = create_app(rt)
    async with app.router.lifespan_context(app):
        session = rt.new_session()
        stream_id = await rt.start_turn(session.session_id, "long job")
        await reached.wait()
    # The store is closed now; read what the final save wrote through the backend's
    # own read hooks (the public methods refuse a closed store).
    saved = await store._load(session.session_id)
    assert saved.active_stream_id is None
    contents = [m.get("content") for m in saved.messages]
    assert contents[0] == "long job"
    assert "kept " in contents
    assert sum(1 for m in saved.messages if m.get("type") == "cancelled") == 1
    events: list[Event] = await store._load_events(session.session_id, stream_id, 0)
    assert [e.type for e in events[-2:]] == ["cancelled", "stream.end"]


def test_import_runtime_does_not_import_the_server_stack() -> None:
    code = (
        "import sys, runtime; "
        "bad = [m for m in ('starlette', 'sse_starlette', 'uvicorn', 'pydantic', 'runtime.asgi') "
        "if m in sys.modules]; "
        "assert not bad, bad"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
