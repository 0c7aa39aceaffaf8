"""Mounting the runtime's app in a FastAPI (or any Starlette) host so that its routes
also appear in the host's OpenAPI document, hence in FastAPI's ``/docs``.

FastAPI documents only its own routes; a mounted sub-application is invisible there.
:func:`mount` mounts the app and wraps the host's ``openapi()`` to add the runtime's
paths under the mount prefix, its schemas renamed ``Runtime<Name>`` so that they never
clash with the host's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette

__all__ = ["mount"]

_REF = "#/components/schemas/"


def _renamed(node: Any, prefix: str) -> Any:
    """``node`` with every schema ``$ref`` pointing at ``<prefix><Name>``."""
    if isinstance(node, dict):
        out = {k: _renamed(v, prefix) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF):
            out["$ref"] = _REF + prefix + ref[len(_REF) :]
        return out
    if isinstance(node, list):
        return [_renamed(v, prefix) for v in node]
    return node


def merge_openapi(host_doc: dict[str, Any], ours: dict[str, Any], path: str) -> dict[str, Any]:
    """``host_doc`` with the paths of ``ours`` added under ``path`` (their schemas and
    security schemes renamed ``Runtime…``/``runtime_…``).

    :raises ValueError: if a path of ours is already in ``host_doc``.
    """
    prefix = path.rstrip("/")
    ours = _renamed(ours, "Runtime")
    rename_sec = {name: f"runtime_{name}" for name in ours["components"]["securitySchemes"]}
    paths = host_doc.setdefault("paths", {})
    for sub, item in ours["paths"].items():
        full = prefix + sub if sub != "/" else prefix + "/"
        if full in paths:
            raise ValueError(f"cannot document {full!r}: the host app already has that path")
        item = {k: dict(op) if isinstance(op, dict) else op for k, op in item.items()}
        for op in item.values():
            if isinstance(op, dict) and "operationId" in op:
                op["operationId"] = "runtime_" + op["operationId"]
                op.setdefault("tags", ["runtime"])
                if "security" in op:
                    op["security"] = [
                        {rename_sec.get(k, k): v for k, v in req.items()} for req in op["security"]
                    ]
                elif "security" in ours:
                    op["security"] = [
                        {rename_sec.get(k, k): v for k, v in req.items()}
                        for req in ours["security"]
                    ]
        paths[full] = item
    components = host_doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name, schema in ours["components"]["schemas"].items():
        schemas["Runtime" + name] = schema
    security = components.setdefault("securitySchemes", {})
    for name, scheme in ours["components"]["securitySchemes"].items():
        security[rename_sec[name]] = scheme
    return host_doc


def mount(host: Any, path: str, app: Starlette) -> None:
    """``host.mount(path, app)``, and the app's routes in ``host.openapi()`` (FastAPI's
    ``/docs`` and ``/openapi.json``) under ``path``. On a host without ``openapi()``
    (plain Starlette) it only mounts.

    :param host: a FastAPI or Starlette application.
    :param path: the mount prefix, e.g. ``"/agent"``.
    :param app: an app from :func:`runtime.asgi.create_app`.
    :raises ValueError: if ``app`` is not one from ``create_app`` or ``path`` does not
        start with ``/``.
    """
    document: Callable[[str], dict[str, Any]] | None = getattr(app.state, "openapi_document", None)
    if document is None:
        raise ValueError(f"{app!r} is not an app made by runtime.asgi.create_app")
    if not isinstance(path, str) or not path.startswith("/") or path == "/":
        raise ValueError(f"invalid mount path {path!r}: must start with '/' and not be '/'")
    host.mount(path, app)
    original = getattr(host, "openapi", None)
    if original is None:
        return

    def openapi() -> dict[str, Any]:
        if getattr(host, "openapi_schema", None):
            return host.openapi_schema  # type: ignore[no-any-return]
        doc = merge_openapi(original(), document(path), path)
        host.openapi_schema = doc
        return doc

    host.openapi = openapi
