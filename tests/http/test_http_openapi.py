"""``/openapi.json`` (generated from the route table and the body models) describes
every route the app serves, with exactly the methods it answers, its parameters,
bodies and error responses; it is a valid OpenAPI 3.1 document, and real responses
validate against its schemas."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import jsonschema_rs
import pytest
import schemathesis
from sse_helpers import events_of, open_app
from starlette.routing import Route

from runtime import EventType
from runtime.testing import Reply, Tool, scripted_agent

PARAM = re.compile(r"{(\w+)}")


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def validate(doc: dict[str, Any], instance: Any, schema_name: str) -> None:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": doc["components"]}
    jsonschema.Draft202012Validator(schema).validate(instance)


async def test_document_lists_every_route_with_params_and_errors() -> None:
    async with open_app() as s:
        r = await s.client.get("/openapi.json")
        assert r.status_code == 200
        doc = r.json()
        assert doc["openapi"] == "3.1.0"
        assert doc["servers"] == [{"url": "/"}]
        assert "security" not in doc  # no token configured

        assert {r.path for r in s.app.routes if isinstance(r, Route)} == set(doc["paths"])
        for path, item in doc["paths"].items():
            # The methods the app answers on the path, as its 405 lists them.
            concrete = PARAM.sub("x", path)
            r = await s.client.request("TRACE", concrete)
            assert r.status_code == 405, (path, r.text)
            assert r.json()["error"] == "method_not_allowed"
            served = set(r.headers["allow"].split(", ")) - {"HEAD"}
            assert served == {m.upper() for m in item if m != "parameters"}, path
            if "get" in item:
                assert "HEAD" in r.headers["allow"]

        operation_ids = []
        for path, item in doc["paths"].items():
            for method, op in item.items():
                if method == "parameters":
                    continue
                operation_ids.append(op["operationId"])
                assert op["summary"]
                assert op["responses"]
                params = item.get("parameters", []) + op.get("parameters", [])
                declared = {p["name"] for p in params if p["in"] == "path"}
                assert declared == set(PARAM.findall(path)), path
                if path.startswith("/api"):
                    assert "401" in op["responses"], (path, method)
                    assert "400" in op["responses"], (path, method)
                if PARAM.search(path) and not path.endswith("/stream"):
                    # (the AI SDK resume route answers 204 for an unknown chat)
                    assert "404" in op["responses"], (path, method)
                if method in ("post",) and "requestBody" in op:
                    media = op["requestBody"]["content"]["application/json"]
                    resolve(doc, media["schema"]["$ref"])
        assert len(operation_ids) == len(set(operation_ids))
        for ref in refs(doc):
            resolve(doc, ref)
        errors = doc["paths"]["/api/sessions/{session_id}/turns"]["post"]["responses"]
        assert {"202", "400", "401", "404", "409", "413"} <= set(errors)
        sse = doc["paths"]["/api/streams/{stream_id}/events"]["get"]
        assert {p["name"] for p in sse["parameters"]} == {"Last-Event-ID", "after_seq", "token"}
        assert {"200", "204", "400", "401", "404", "410"} <= set(sse["responses"])


async def test_security_is_declared_when_a_token_is_set() -> None:
    async with open_app(api_token="t") as s:
        doc = (await s.client.get("/openapi.json")).json()
        assert doc["security"] == [{"bearer": []}]
        sse = doc["paths"]["/api/streams/{stream_id}/events"]["get"]
        assert {"query_token": []} in sse["security"]
        assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def test_real_responses_match_the_schemas() -> None:
    agent = scripted_agent(["a", Tool("t", {"x": 1}, result=[1]), Reply("b")])
    async with open_app(agent) as s:
        doc = (await s.client.get("/openapi.json")).json()
        created = await s.client.post("/api/sessions", json={"title": "t"})
        validate(doc, created.json(), "Session")
        sid = created.json()["session_id"]
        turn = await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "m"})
        validate(doc, turn.json(), "TurnStarted")
        stream_id = turn.json()["stream_id"]
        await s.runtime.wait_stream(stream_id)
        validate(doc, (await s.client.get(f"/api/sessions/{sid}")).json(), "Session")
        meta = (await s.client.get(f"/api/sessions/{sid}?metadata_only=1")).json()
        validate(doc, meta, "SessionMeta")
        validate(doc, (await s.client.get("/api/sessions")).json(), "SessionPage")
        validate(doc, (await s.client.get(f"/api/sessions/{sid}/status")).json(), "Status")
        validate(
            doc, (await s.client.post(f"/api/streams/{stream_id}/cancel")).json(), "CancelResult"
        )
        for event in events_of((await s.client.get(f"/api/streams/{stream_id}/events")).text):
            validate(doc, event, "Event")
        busy_or_bad = await s.client.post(f"/api/sessions/{sid}/turns", json={"message": " "})
        validate(doc, busy_or_bad.json(), "Error")


async def test_document_is_valid_openapi_3_1() -> None:
    async with open_app(api_token="t") as s:
        doc = (await s.client.get("/openapi.json")).json()
    schemathesis.openapi.from_dict(doc).validate()  # the OpenAPI 3.1 meta-schema
    broken = {**doc, "paths": {**doc["paths"], "/api/sessions": {"get": {"responses": 5}}}}
    with pytest.raises(jsonschema_rs.ValidationError):
        schemathesis.openapi.from_dict(broken).validate()


async def test_body_schemas_come_from_the_models_and_match_validation() -> None:
    """What the schema of a body forbids, the route refuses (400), naming the field."""
    async with open_app() as s:
        doc = (await s.client.get("/openapi.json")).json()
        turn = doc["components"]["schemas"]["NewTurn"]
        assert turn["additionalProperties"] is False
        assert turn["required"] == ["message"]
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        for body, field in [
            ({"message": "x", "config": [1]}, "config"),
            ({"message": "x", "metadata": 3}, "metadata"),
            ({"message": True}, "message"),
        ]:
            with pytest.raises(jsonschema.ValidationError):
                validate(doc, body, "NewTurn")
            r = await s.client.post(f"/api/sessions/{sid}/turns", json=body)
            assert r.status_code == 400, r.text
            assert r.json()["error"] == "invalid_body"
            assert r.json()["detail"].startswith(f"invalid {field} "), r.json()
        chat = doc["components"]["schemas"]["ChatRequest"]
        assert chat["properties"]["trigger"]["enum"] == ["submit-message", "regenerate-message"]
        assert chat["properties"]["id"]["pattern"] == "^[A-Za-z0-9_-]{1,64}$"
        nested = {"id": "c1", "messages": [{"role": "user", "parts": []}, 7]}
        r = await s.client.post("/api/chat", json=nested)
        assert r.status_code == 400
        assert r.json()["detail"] == "invalid messages[1] 7: must be a JSON object"
        event_types = doc["components"]["schemas"]["EventType"]["enum"]
        assert set(event_types) == {str(t) for t in EventType}
