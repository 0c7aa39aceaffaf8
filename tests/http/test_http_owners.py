"""Per-user isolation: ``create_app(rt, authenticate=hook)``. Every route, two
principals: each sees and drives only the sessions and streams it created; the other
one's answer 404 (the same answer as an id that does not exist)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from starlette.requests import Request

from runtime import FileStore, Runtime
from runtime.asgi import OWNER_KEY, create_app
from runtime.testing import Reply, Sleep, scripted_agent

ALICE = {"X-User": "alice"}
BOB = {"X-User": "bob"}


def by_header(request: Request) -> str | None:
    """The hook of these tests: the principal is the ``X-User`` header (a real host
    would verify a session cookie or a signed token here)."""
    return request.headers.get("x-user") or None


@asynccontextmanager
async def served(
    tmp_path: Path, hook: Any = by_header, agent: Any = None
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    rt = Runtime(FileStore(tmp_path / "store"), agent or scripted_agent([Reply("hi")]))
    app = create_app(rt, authenticate=hook)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            yield c, rt


async def new_session(client: httpx.AsyncClient, who: dict[str, str], title: str) -> str:
    r = await client.post("/api/sessions", json={"title": title}, headers=who)
    assert r.status_code == 201, r.text
    assert r.json()["metadata"][OWNER_KEY] == who["X-User"]
    sid: str = r.json()["session_id"]
    return sid


async def finished_turn(client: httpx.AsyncClient, who: dict[str, str], sid: str) -> str:
    r = await client.post(f"/api/sessions/{sid}/turns", json={"message": "go"}, headers=who)
    assert r.status_code == 202, r.text
    stream: str = r.json()["stream_id"]
    r = await client.get(f"/api/streams/{stream}/events", headers=who)
    assert r.status_code == 200 and "event: stream.end" in r.text
    return stream


async def test_every_route_serves_only_the_owner(tmp_path: Path) -> None:
    async with served(tmp_path) as (client, _):
        sid = await new_session(client, ALICE, "alice's")
        stream = await finished_turn(client, ALICE, sid)
        missing = await client.get("/api/sessions/nosuchsession", headers=BOB)
        assert missing.status_code == 404
        for method, url, body in [
            ("GET", f"/api/sessions/{sid}", None),
            ("GET", f"/api/sessions/{sid}?metadata_only=1", None),
            ("GET", f"/api/sessions/{sid}/status", None),
            ("POST", f"/api/sessions/{sid}/turns", {"message": "mine now"}),
            ("DELETE", f"/api/sessions/{sid}", None),
            ("GET", f"/api/streams/{stream}/events", None),
            ("POST", f"/api/streams/{stream}/cancel", None),
        ]:
            r = await client.request(method, url, json=body, headers=BOB)
            assert r.status_code == 404, (method, url, r.text)
            assert r.json()["error"] in ("session_not_found", "stream_not_found")
            assert "alice" not in r.text
        page = await client.get("/api/sessions", headers=BOB)
        assert page.json()["sessions"] == []
        # nothing bob did changed alice's session; she still drives it
        r = await client.get(f"/api/sessions/{sid}", headers=ALICE)
        assert [m["content"] for m in r.json()["messages"]] == ["go", "hi"]
        assert (await client.get(f"/api/sessions/{sid}/status", headers=ALICE)).status_code == 200
        r = await client.get(f"/api/streams/{stream}/events", headers=ALICE)
        assert "event: stream.end" in r.text
        r = await client.post(f"/api/streams/{stream}/cancel", headers=ALICE)
        assert r.status_code == 200 and r.json()["cancelled"] is False
        assert (await client.delete(f"/api/sessions/{sid}", headers=ALICE)).status_code == 204


async def test_a_live_stream_is_hidden_and_cannot_be_cancelled_by_another(
    tmp_path: Path,
) -> None:
    agent = scripted_agent(["a", Sleep(30), Reply("never")])
    async with served(tmp_path, agent=agent) as (client, rt):
        sid = await new_session(client, ALICE, "long")
        r = await client.post(f"/api/sessions/{sid}/turns", json={"message": "go"}, headers=ALICE)
        stream = r.json()["stream_id"]
        assert (await client.post(f"/api/streams/{stream}/cancel", headers=BOB)).status_code == 404
        assert rt.is_live(stream)
        r = await client.get(f"/api/streams/{stream}/events?after_seq=0", headers=BOB)
        assert r.status_code == 404
        r = await client.post(f"/api/streams/{stream}/cancel", headers=ALICE)
        assert r.json()["cancelled"] is True


async def test_listing_pages_through_the_callers_sessions_only(tmp_path: Path) -> None:
    async with served(tmp_path) as (client, _):
        mine: list[str] = []
        for i in range(5):
            sid = await new_session(client, ALICE, f"a{i}")
            await finished_turn(client, ALICE, sid)
            mine.append(sid)
            other = await new_session(client, BOB, f"b{i}")
            await finished_turn(client, BOB, other)
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            r = await client.get("/api/sessions", params=params, headers=ALICE)
            assert r.status_code == 200, r.text
            body = r.json()
            assert len(body["sessions"]) <= 2
            seen += [s["session_id"] for s in body["sessions"]]
            if (cursor := body["next_cursor"]) is None:
                break
        assert sorted(seen) == sorted(mine) and len(seen) == 5
        r = await client.get("/api/sessions", params={"cursor": "zzz"}, headers=ALICE)
        assert r.status_code == 400


async def test_no_principal_is_401_on_every_route(tmp_path: Path) -> None:
    async with served(tmp_path) as (client, _):
        sid = await new_session(client, ALICE, "x")
        stream = f"{'0' * 16}.{sid}"
        for method, url in [
            ("GET", "/api/sessions"),
            ("POST", "/api/sessions"),
            ("GET", f"/api/sessions/{sid}"),
            ("GET", f"/api/sessions/{sid}/status"),
            ("DELETE", f"/api/sessions/{sid}"),
            ("POST", f"/api/sessions/{sid}/turns"),
            ("GET", f"/api/streams/{stream}/events"),
            ("POST", f"/api/streams/{stream}/cancel"),
        ]:
            r = await client.request(method, url, json={"message": "x"})
            assert r.status_code == 401, (method, url, r.text)
            assert r.json()["error"] == "unauthorized"


async def test_a_session_without_owner_is_served_to_nobody(tmp_path: Path) -> None:
    async with served(tmp_path) as (client, rt):
        sid = rt.new_session(title="made by the host").session_id
        for who in (ALICE, BOB):
            assert (await client.get(f"/api/sessions/{sid}", headers=who)).status_code == 404


async def test_an_async_hook(tmp_path: Path) -> None:
    async def hook(request: Request) -> str | None:
        await anyio.lowlevel.checkpoint()
        return request.headers.get("x-user")

    async with served(tmp_path, hook=hook) as (client, _):
        sid = await new_session(client, ALICE, "async")
        assert (await client.get(f"/api/sessions/{sid}", headers=BOB)).status_code == 404
        assert (await client.get(f"/api/sessions/{sid}", headers=ALICE)).status_code == 200


def test_hook_and_token_together_are_refused(tmp_path: Path) -> None:
    rt = Runtime(FileStore(tmp_path / "s"), scripted_agent([]))
    with pytest.raises(ValueError, match="api_token or authenticate, not both"):
        create_app(rt, api_token="t", authenticate=by_header)
    with pytest.raises(TypeError, match="must be callable"):
        create_app(rt, authenticate="alice")  # type: ignore[arg-type]


async def test_the_shared_token_stays_the_default(tmp_path: Path) -> None:
    rt = Runtime(FileStore(tmp_path / "s"), scripted_agent([Reply("x")]))
    app = create_app(rt, api_token="s3cret")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            assert (await c.get("/api/sessions")).status_code == 401
            auth = {"Authorization": "Bearer s3cret"}
            r = await c.post("/api/sessions", json={"title": "t"}, headers=auth)
            assert r.status_code == 201 and OWNER_KEY not in r.json()["metadata"]


async def test_the_chat_protocol_routes_serve_only_the_owner(tmp_path: Path) -> None:
    """The AI SDK and AG-UI routes name the session in the body (the chat id, the
    thread id) or the path: another principal's session is 404 there too, and a chat
    a principal opens is theirs."""
    ui_message = {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
    async with served(tmp_path) as (client, _):
        sid = await new_session(client, ALICE, "alice's")
        await finished_turn(client, ALICE, sid)
        agui = {
            "threadId": sid,
            "runId": "r1",
            "messages": [{"id": "m1", "role": "user", "content": "hi"}],
            "state": {},
            "tools": [],
            "context": [],
            "forwardedProps": {},
        }
        for method, url, body in [
            ("PATCH", f"/api/sessions/{sid}", {"title": "bob's now"}),
            ("GET", f"/api/sessions/{sid}/streams", None),
            ("GET", f"/api/chat/{sid}", None),
            ("GET", f"/api/chat/{sid}/stream", None),
            ("POST", f"/api/chat/{sid}/stop", None),
            ("POST", "/api/chat", {"id": sid, "messages": [ui_message]}),
            ("POST", "/api/agui", agui),
        ]:
            r = await client.request(method, url, json=body, headers=BOB)
            assert r.status_code == 404, (method, url, r.text)
        r = await client.get(f"/api/sessions/{sid}", headers=ALICE)
        assert r.json()["title"] == "alice's"
        assert [m["content"] for m in r.json()["messages"]] == ["go", "hi"]
        r = await client.post(
            "/api/chat", json={"id": "bobs_chat", "messages": [ui_message]}, headers=BOB
        )
        assert r.status_code == 200, r.text
        r = await client.get("/api/sessions/bobs_chat", headers=BOB)
        assert r.json()["metadata"][OWNER_KEY] == "bob"
        assert (await client.get("/api/sessions/bobs_chat", headers=ALICE)).status_code == 404
