"""``examples/fastapi_app.py``: the runtime app mounted under ``/agent`` in FastAPI,
driven through the host app (its lifespan enters the runtime)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from sse_helpers import REPO, events_of


def load_example(monkeypatch: pytest.MonkeyPatch, home: Path) -> ModuleType:
    monkeypatch.setenv("RUNTIME_HOME", str(home))
    spec = importlib.util.spec_from_file_location(
        "fastapi_app_example", REPO / "examples" / "fastapi_app.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_mounted_under_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = load_example(monkeypatch, tmp_path)
    app = example.app
    async with app.router.lifespan_context(app):
        assert example.runtime.running
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            assert (await client.get("/health")).json()["ok"] is True
            redirect = await client.get("/agent")
            assert redirect.status_code in (307, 308)
            assert redirect.headers["location"].endswith("/agent/")
            page = await client.get("/agent/")
            assert page.status_code == 200
            assert 'src="static/app.js"' in page.text
            assert (await client.get("/agent/static/app.js")).status_code == 200
            doc = (await client.get("/agent/openapi.json")).json()
            assert doc["servers"] == [{"url": "/agent"}]
            host_doc = (await client.get("/openapi.json")).json()
            assert "/health" in host_doc["paths"]
            for path in doc["paths"]:  # every runtime route, under the mount prefix
                assert ("/agent" + path if path != "/" else "/agent/") in host_doc["paths"]
            turns = host_doc["paths"]["/agent/api/sessions/{session_id}/turns"]["post"]
            assert turns["tags"] == ["runtime"]
            ref = turns["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref == "#/components/schemas/RuntimeNewTurn"
            assert "RuntimeNewTurn" in host_doc["components"]["schemas"]
            docs_page = await client.get("/docs")
            assert docs_page.status_code == 200
            assert "/openapi.json" in docs_page.text

            created = await client.post("/agent/api/sessions", json={"title": "mounted"})
            assert created.status_code == 201
            sid = created.json()["session_id"]
            assert created.headers["location"] == f"/agent/api/sessions/{sid}"
            turn = await client.post(
                f"/agent/api/sessions/{sid}/turns", json={"message": "one two three"}
            )
            assert turn.status_code == 202
            assert turn.headers["location"].startswith("/agent/api/streams/")
            events = events_of((await client.get(turn.headers["location"])).text)
            text = "".join(e["data"]["text"] for e in events if e["type"] == "token")
            assert text == "one two three That was 3 words."
            assert [e["type"] for e in events][-2:] == ["done", "stream.end"]
            listed = (await client.get("/agent/api/sessions")).json()["sessions"]
            assert [s["session_id"] for s in listed] == [sid]
    assert not example.runtime.running
    assert (tmp_path / "sessions" / f"{sid}.json").is_file()
