"""``runtime.asgi.mount``: the runtime's routes in a FastAPI host's OpenAPI document
(``/docs``), with references and security schemes that resolve, and plain mounting on
a Starlette host."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from starlette.applications import Starlette
from test_http_openapi import refs, resolve

from runtime import MemoryStore, Runtime, Turn
from runtime.asgi import create_app, mount


async def agent(turn: Turn) -> None:
    await turn.reply("ok")


def served(doc: dict[str, Any]) -> set[str]:
    return set(doc["paths"])


async def test_fastapi_host_documents_the_routes_with_auth() -> None:
    host = FastAPI(title="host")

    @host.get("/users/{user_id}")
    async def user(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    rt = Runtime(MemoryStore(), agent)
    mount(host, "/agent", create_app(rt, api_token="t"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=host), base_url="http://localhost"
    ) as client:
        doc = (await client.get("/openapi.json")).json()
    assert {"/users/{user_id}", "/agent/api/sessions", "/agent/api/chat", "/agent/"} <= served(doc)
    for ref in refs(doc):
        resolve(doc, ref)  # every reference resolves in the merged document
    schemathesis.openapi.from_dict(doc).validate()  # still a valid OpenAPI 3.1 document
    schemes = doc["components"]["securitySchemes"]
    assert set(schemes) >= {"runtime_bearer", "runtime_query_token"}
    sessions = doc["paths"]["/agent/api/sessions"]["get"]
    assert sessions["security"] == [{"runtime_bearer": []}]
    events = doc["paths"]["/agent/api/streams/{stream_id}/events"]["get"]
    assert {"runtime_query_token": []} in events["security"]
    ids = [
        op["operationId"]
        for item in doc["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    ]
    assert len(ids) == len(set(ids))


def test_bad_mounts_are_refused() -> None:
    host = FastAPI()
    with pytest.raises(ValueError, match=r"not an app made by runtime\.asgi\.create_app"):
        mount(host, "/agent", Starlette())
    app = create_app(Runtime(MemoryStore(), agent))
    with pytest.raises(ValueError, match="invalid mount path"):
        mount(host, "agent", app)


def test_a_clash_with_a_host_path_is_named() -> None:
    host = FastAPI()

    @host.get("/agent/api/sessions")
    async def mine() -> dict[str, bool]:
        return {"mine": True}

    mount(host, "/agent", create_app(Runtime(MemoryStore(), agent)))
    with pytest.raises(ValueError, match=r"'/agent/api/sessions'.*already has that path"):
        host.openapi()


async def test_plain_starlette_host_just_mounts() -> None:
    rt = Runtime(MemoryStore(), agent)
    host = Starlette()
    mount(host, "/agent", create_app(rt))
    async with (
        rt,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=host), base_url="http://localhost"
        ) as client,
    ):
        r = await client.get("/agent/openapi.json")
        assert r.status_code == 200
        assert r.json()["servers"] == [{"url": "/agent"}]
