"""Hostile input at the HTTP edge: a foreign ``Host`` (DNS rebinding), a cross-site
``text/plain`` POST, oversized or control-character titles, and a failing disk, each
answered with a clear JSON error and nothing written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sse_helpers import open_app
from test_http_api import assert_error

from runtime import FileStore


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example"])
async def test_a_foreign_host_is_refused_on_every_route(host: str) -> None:
    """A page on ``evil.example`` rebound to 127.0.0.1 sends ``Host: evil.example``: it
    must not list sessions, start turns or even load the demo page."""
    async with open_app() as s:
        sid = (await s.client.post("/api/sessions", json={"title": "mine"})).json()["session_id"]
        for method, path in [
            ("GET", "/api/sessions"),
            ("GET", f"/api/sessions/{sid}"),
            ("POST", f"/api/sessions/{sid}/turns"),
            ("GET", "/"),
            ("GET", "/openapi.json"),
        ]:
            r = await s.client.request(method, path, headers={"host": host}, json={"message": "x"})
            assert_error(r, 400, "invalid_host", repr(host))
        assert not (await s.client.get(f"/api/sessions/{sid}")).json()["messages"]


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1", "[::1]:9", "LOCALHOST"])
async def test_loopback_hosts_are_allowed_by_default(host: str) -> None:
    async with open_app() as s:
        assert (await s.client.get("/api/sessions", headers={"host": host})).status_code == 200


async def test_allowed_hosts_are_configurable() -> None:
    async with open_app(allowed_hosts=["chat.example.com", "*.internal"]) as s:
        for host, status in [
            ("chat.example.com", 200),
            ("a.b.internal:443", 200),
            ("localhost", 400),
            ("internal", 400),
        ]:
            r = await s.client.get("/api/sessions", headers={"host": host})
            assert r.status_code == status, (host, r.text)
    async with open_app(allowed_hosts=["*"]) as s:
        r = await s.client.get("/api/sessions", headers={"host": "anything.example"})
        assert r.status_code == 200


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_a_json_route_refuses_other_content_types_with_415(content_type: str | None) -> None:
    """A cross-site page can POST ``text/plain`` or a form without a CORS preflight, so
    a JSON route takes only ``application/json`` and writes nothing otherwise."""
    async with open_app() as s:
        sid = (await s.client.post("/api/sessions", json={"title": "t"})).json()["session_id"]
        headers = {} if content_type is None else {"content-type": content_type}
        body = b'{"message": "run this"}'
        r = await s.client.post(f"/api/sessions/{sid}/turns", content=body, headers=headers)
        assert_error(r, 415, "unsupported_media_type", "application/json")
        r = await s.client.post("/api/sessions", content=b'{"title": "x"}', headers=headers)
        assert_error(r, 415, "unsupported_media_type")
        session = (await s.client.get(f"/api/sessions/{sid}")).json()
        assert session["messages"] == [] and session["active_stream_id"] is None


async def test_json_with_a_charset_and_an_empty_new_session_body_are_accepted() -> None:
    async with open_app() as s:
        r = await s.client.post(
            "/api/sessions",
            content=b'{"title": "x"}',
            headers={"content-type": "application/json; charset=utf-8"},
        )
        assert r.status_code == 201
        assert (await s.client.post("/api/sessions")).status_code == 201


@pytest.mark.parametrize(
    ("title", "mention"),
    [("x" * 201, "201 characters"), ("a\x00b", "'\\x00'"), ("line\nbreak", "'\\n'")],
    ids=["too-long", "nul", "newline"],
)
async def test_bad_titles_are_refused(title: str, mention: str) -> None:
    async with open_app() as s:
        r = await s.client.post("/api/sessions", json={"title": title})
        assert_error(r, 400, "invalid_body", mention)
        assert (await s.client.get("/api/sessions")).json()["sessions"] == []


async def test_a_failing_disk_is_503_store_error_naming_the_path(tmp_path: Path) -> None:
    """ENOTDIR for real: the store's directory became a file under the running server.
    Starting a turn answers 503 ``store_error`` naming the path; once the disk is back
    the same request works."""
    async with open_app(store=FileStore(tmp_path)) as s:
        sid = (await s.client.post("/api/sessions", json={"title": "t"})).json()["session_id"]
        sessions = tmp_path / "sessions"
        sessions.rename(tmp_path / "moved")
        sessions.write_bytes(b"")
        r = await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "hi"})
        body: dict[str, Any] = assert_error(r, 503, "store_error", "sessions", "Not a directory")
        assert "Traceback" not in body["detail"]
        sessions.unlink()
        (tmp_path / "moved").rename(sessions)
        r = await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "hi"})
        assert r.status_code == 202, r.text
        await s.runtime.wait_stream(r.json()["stream_id"])
