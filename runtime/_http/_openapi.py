"""The OpenAPI 3.1 document served at ``/openapi.json``, generated from the route table
(:data:`runtime._http._table.OPERATIONS`) and the pydantic models it names."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from . import _models as m
from ._table import OPERATIONS, Op, Param, Reply

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"
_PATH_PARAMS = {
    "session_id": Param(
        "session_id",
        "path",
        {"type": "string", "pattern": m.SESSION_ID_PATTERN},
        "Session id (the chat id of the chat protocols).",
    ),
    "stream_id": Param(
        "stream_id",
        "path",
        {"type": "string", "pattern": m.STREAM_ID_PATTERN},
        "Stream id, as returned by POST /api/sessions/{session_id}/turns.",
    ),
}
_PLACEHOLDER = re.compile(r"{(\w+)}")
_AUTOMATIC = {
    401: "Missing or wrong bearer token (only when a token is configured).",
    413: "Body larger than 1 MiB.",
    415: "Body not sent as Content-Type: application/json.",
}


def _parameter(p: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p.name, "in": p.where, "schema": dict(p.schema)}
    if p.where == "path":
        out["required"] = True
    if p.description:
        out["description"] = p.description
    return out


def _models(operations: Sequence[Op]) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = [m.Error]
    for op in operations:
        candidates: list[type[BaseModel] | None] = [op.body]
        for reply in op.responses.values():
            if isinstance(reply, Reply):
                candidates += [reply.model, reply.item]
        found += [c for c in candidates if c is not None and c not in found]
    return found


def _schemas(models: list[type[BaseModel]]) -> dict[str, Any]:
    _, top = models_json_schema([(model, "validation") for model in models], ref_template=_REF)
    return dict(top.get("$defs", {}))


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _response(reply: Reply | str) -> dict[str, Any]:
    if isinstance(reply, str):
        return {"description": reply, "content": {"application/json": {"schema": _ref(m.Error)}}}
    out: dict[str, Any] = {"description": reply.description}
    if reply.model is not None:
        out["content"] = {"application/json": {"schema": _ref(reply.model)}}
    elif reply.media is not None:
        media: dict[str, Any] = {"schema": {"type": "string"}}
        if reply.media == "application/json":
            media["schema"] = {"type": "object"}
        if reply.item is not None:
            # OpenAPI 3.2 names this itemSchema; 3.1 allows it only as an extension.
            media["x-itemSchema"] = _ref(reply.item)
        out["content"] = {reply.media: media}
    return out


def _operation(op: Op, auth: bool) -> dict[str, Any]:
    path_params = _PLACEHOLDER.findall(op.path)
    responses: dict[int, Reply | str] = dict(op.responses)
    if op.auth != "none":
        responses.setdefault(401, _AUTOMATIC[401])
    if op.body is not None:
        responses.setdefault(400, "Invalid body.")
        responses.setdefault(413, _AUTOMATIC[413])
        responses.setdefault(415, _AUTOMATIC[415])
    if path_params:
        names = " or ".join(p.replace("_", " ") for p in path_params)
        responses.setdefault(400, f"Invalid {names}.")
    out: dict[str, Any] = {"operationId": op.name, "summary": op.summary}
    if op.description:
        out["description"] = op.description
    if op.params:
        out["parameters"] = [_parameter(p) for p in op.params]
    if op.body is not None:
        out["requestBody"] = {
            "required": not op.body_optional,
            "content": {"application/json": {"schema": _ref(op.body)}},
        }
    out["responses"] = {str(code): _response(r) for code, r in sorted(responses.items())}
    if op.auth == "none":
        out["security"] = []
    elif op.auth == "query":
        out["security"] = [{"bearer": []}, {"query_token": []}] if auth else []
    return out


@cache
def _document(server_url: str, auth: bool, operations: tuple[Op, ...]) -> dict[str, Any]:
    from .. import __version__

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        item = paths.get(op.path)
        if item is None:
            item = paths[op.path] = {}
            names = _PLACEHOLDER.findall(op.path)
            if names:  # path parameters, shared by the path's operations
                item["parameters"] = [_parameter(_PATH_PARAMS[name]) for name in names]
        item[op.method.lower()] = _operation(op, auth)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "runtime HTTP API",
            "version": __version__,
            "description": (
                "Sessions, turns and resumable Server-Sent Events of an agent runtime. "
                "Errors are JSON {error, detail}."
            ),
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": _schemas(_models(operations)),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "query_token": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
    }
    if auth:
        doc["security"] = [{"bearer": []}]
    return doc


def openapi_document(
    server_url: str = "/", *, auth: bool, operations: Sequence[Op] = OPERATIONS
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations`` (a fresh copy; built once per
    arguments).

    :param server_url: where the app is mounted (``root_path`` or ``/``).
    :param auth: whether a bearer token (or the ``authenticate`` hook) guards ``/api``.
    """
    return copy.deepcopy(_document(server_url, auth, tuple(operations)))
