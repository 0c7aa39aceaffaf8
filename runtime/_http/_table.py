"""The route table: every operation of the HTTP API in one place (method, path,
endpoint, body and response models, summary, status codes, parameters, security).

Both the Starlette routes (:func:`build_routes`) and the OpenAPI document
(:func:`runtime._http._openapi.openapi_document`) are made from :data:`OPERATIONS`, so
they cannot drift apart. Adding a route is one :class:`Op` entry here plus its
endpoint method (``async def name(self, request[, body])``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import BaseModel
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from . import _models as m
from ._agui import AgUiRun
from ._ai_sdk import AiSdkChat
from ._errors import JSONResponse
from ._models import read_body
from ._routes import Api
from ._sse import StreamEvents

__all__ = ["OPERATIONS", "Op", "Pages", "Param", "Reply", "build_routes"]

Endpoint = Callable[..., Awaitable[Response]]


@dataclass(frozen=True)
class Param:
    """A query or header parameter (path parameters come from the path)."""

    name: str
    where: Literal["path", "query", "header"]
    schema: Mapping[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Reply:
    """A documented response: a JSON ``model``, or another ``media`` type (with the
    schema of one SSE message's data as ``item``), or no body."""

    description: str
    model: type[BaseModel] | None = None
    media: str | None = None
    item: type[BaseModel] | None = None


@dataclass(frozen=True, eq=False)
class Op:
    """One operation.

    :param endpoint: an endpoint method of :class:`Api`, :class:`AiSdkChat`,
        :class:`StreamEvents`, :class:`AgUiRun` or :class:`Pages`, unbound; it gets the
        request, and with ``body`` the validated body model as second argument.
    :param responses: status -> :class:`Reply`, or the description of an error answer
        (``{"error", "detail"}``). 401 (guarded routes), 413/415 (with a body) and 400
        (with a body or a path parameter) are added when not given.
    :param auth: ``bearer``: the API token (or the ``authenticate`` hook) guards it;
        ``query``: also as ``?token=`` (for ``EventSource``); ``none``: public.
    :param body_optional: an empty body counts as ``{}``.
    :param name: the operationId; for the first operation of a path also the route name
        (``request.url_for``).
    """

    method: str
    path: str
    endpoint: Endpoint
    name: str
    summary: str
    responses: Mapping[int, Reply | str]
    body: type[m.Body] | None = None
    body_optional: bool = False
    params: Sequence[Param] = ()
    auth: Literal["bearer", "query", "none"] = "bearer"
    description: str | None = None


class Pages:
    """The public pages: the demo page and the OpenAPI document.

    :param static_dir: the demo page's folder.
    :param document: the OpenAPI document for a server URL (the mount's root path).
    """

    def __init__(self, static_dir: Path, document: Callable[[str], dict[str, Any]]) -> None:
        self.static_dir = static_dir
        self.document = document

    async def index(self, request: Request) -> Response:
        """``GET /``: the demo page."""
        return FileResponse(self.static_dir / "index.html", headers={"Cache-Control": "no-cache"})

    async def openapi(self, request: Request) -> Response:
        """``GET /openapi.json``: the document, with the mount prefix as its server."""
        return JSONResponse(self.document(request.scope.get("root_path") or "/"))


# -- the table ---------------------------------------------------------------------------

_LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50})
_CURSOR = Param("cursor", "query", {"type": "string"}, "next_cursor of the previous page.")
_METADATA_ONLY = Param(
    "metadata_only",
    "query",
    {"type": "string", "enum": ["0", "1", "true", "false"]},
    "1/true: omit messages.",
)
_SSE_PARAMS = (
    Param(
        "Last-Event-ID",
        "header",
        {"type": "string", "pattern": "^[0-9]{1,18}$"},
        "Resume after this seq (wins over after_seq).",
    ),
    Param("after_seq", "query", {"type": "integer", "minimum": 0}, "Resume after this seq."),
    Param(
        "token",
        "query",
        {"type": "string"},
        "The API token, for EventSource (cannot send headers).",
    ),
)

_NO_SESSION = "No such session."
_SSE_DESCRIPTION = """\
Server-Sent Events. First `retry: <ms>`, then one message per event:
`id: <seq>`, `event: <type>`, `data: <Event JSON>`; a `: heartbeat` comment while idle.
The response ends after `stream.end`. Resume with the `Last-Event-ID` header (wins) or
`?after_seq=`: exactly the events with a greater seq, no duplicates, no gaps. A stream
whose process died (server restart) replays its persisted events, then `error`
`{"type": "interrupted"}`, then `stream.end`. Disconnecting never cancels the turn."""
_UI_STREAM = Reply(
    "Vercel AI SDK UI message stream v1 (header x-vercel-ai-ui-message-stream: v1): "
    "data: <chunk JSON> per chunk, then data: [DONE].",
    media="text/event-stream",
)

_S = "/api/sessions/{session_id}"
_C = "/api/chat/{session_id}"

#: Every operation of the app, in the order of its routes.
OPERATIONS: tuple[Op, ...] = (
    Op(
        "GET",
        "/",
        Pages.index,
        "demo_page",
        "The demo page (HTML).",
        {200: Reply("HTML", media="text/html")},
        auth="none",
    ),
    Op(
        "GET",
        "/openapi.json",
        Pages.openapi,
        "openapi",
        "This document.",
        {200: Reply("OpenAPI 3.1", media="application/json")},
        auth="none",
    ),
    Op(
        "GET",
        "/api/sessions",
        Api.list_sessions,
        "list_sessions",
        "List sessions, newest first; empty Untitled sessions are hidden.",
        {200: Reply("One page.", m.SessionPage), 400: "Invalid limit or cursor."},
        params=(_LIMIT, _CURSOR),
    ),
    Op(
        "POST",
        "/api/sessions",
        Api.create_session,
        "create_session",
        "Create a session (kept in memory until its first turn).",
        {
            201: Reply("The new session (Location: its URL).", m.Session),
            400: "Body is not a JSON object, has unknown fields, a bad title or session id.",
            409: "The client-chosen session_id is taken.",
        },
        body=m.NewSession,
        body_optional=True,
    ),
    Op(
        "GET",
        _S,
        Api.get_session,
        "get_session",
        "Get a session; a stale stream is repaired through a full load.",
        {
            200: Reply("The session.", m.Session),
            400: "Invalid session id or metadata_only value.",
            404: _NO_SESSION,
        },
        params=(_METADATA_ONLY,),
    ),
    Op(
        "PATCH",
        _S,
        Api.rename_session,
        "rename_session",
        "Rename a session.",
        {
            200: Reply("The session's metadata.", m.SessionMeta),
            400: "Invalid session id or title.",
            404: _NO_SESSION,
            409: "A live stream owns the session; rename it after the turn.",
        },
        body=m.Rename,
    ),
    Op(
        "DELETE",
        _S,
        Api.delete_session,
        "delete_session",
        "Delete a session (never resurrected by recovery).",
        {
            204: Reply("Deleted."),
            404: _NO_SESSION,
            409: "A live stream owns the session; cancel it first.",
        },
    ),
    Op(
        "GET",
        _S + "/status",
        Api.session_status,
        "session_status",
        "Stream status of a session.",
        {200: Reply("Status.", m.Status), 404: _NO_SESSION},
    ),
    Op(
        "GET",
        _S + "/streams",
        Api.session_streams,
        "session_streams",
        "The session's streams (turns), oldest first.",
        {200: Reply("Streams.", m.StreamList), 404: _NO_SESSION},
    ),
    Op(
        "POST",
        _S + "/turns",
        Api.start_turn,
        "start_turn",
        "Send a user message; the agent runs in the background.",
        {
            202: Reply("Started; follow Location (the events URL).", m.TurnStarted),
            200: Reply(
                "With Accept: text/event-stream: the turn's events at once, as "
                "GET /api/streams/{stream_id}/events sends them.",
                media="text/event-stream",
                item=m.Event,
            ),
            400: "Invalid session id, or body/message invalid.",
            404: _NO_SESSION,
            409: "session_busy: a live stream owns the session (see active_stream_id); "
            "history_mismatch: rewind_to is past the session's messages.",
        },
        body=m.NewTurn,
    ),
    Op(
        "POST",
        _S + "/resume",
        Api.resume_turn,
        "resume_turn",
        "Continue the session's interrupted turn (the same stream, its next attempt).",
        {
            202: Reply("Resumed; follow Location with Last-Event-ID.", m.TurnResumed),
            404: _NO_SESSION,
            409: "session_busy: a live stream owns the session; nothing_to_resume: the "
            "last turn was not interrupted.",
        },
    ),
    Op(
        "GET",
        "/api/streams/{stream_id}/events",
        StreamEvents.__call__,
        "stream_events",
        "Follow a stream as Server-Sent Events (resumable).",
        {
            200: Reply(_SSE_DESCRIPTION, media="text/event-stream", item=m.Event),
            204: Reply("The stream ended and has no event after the seq."),
            400: "Invalid stream id, Last-Event-ID or after_seq.",
            404: "No live, retained or persisted stream with this id.",
            410: "The events after the seq are no longer retained.",
        },
        params=_SSE_PARAMS,
        auth="query",
        description=_SSE_DESCRIPTION,
    ),
    Op(
        "POST",
        "/api/streams/{stream_id}/cancel",
        Api.cancel_stream,
        "cancel_stream",
        "Cancel a live turn (partial output kept); returns after its save.",
        {200: Reply("Result.", m.CancelResult), 404: "No such stream."},
    ),
    Op(
        "POST",
        "/api/chat",
        AiSdkChat.send,
        "ai_sdk_chat",
        "AI SDK: start a turn with the last user message and stream it.",
        {
            200: _UI_STREAM,
            400: "Invalid body, id or messages.",
            404: "The chat belongs to another user.",
            409: "session_busy: a live turn owns the chat; history_mismatch: a "
            "regenerate or edit whose messages do not line up with the stored chat.",
        },
        body=m.ChatRequest,
    ),
    Op(
        "GET",
        _C,
        AiSdkChat.messages,
        "ai_sdk_messages",
        "AI SDK: the stored transcript as UI messages {id, messages}.",
        {200: Reply("The chat.", m.ChatMessages), 404: "No such chat."},
    ),
    Op(
        "GET",
        _C + "/stream",
        AiSdkChat.resume,
        "ai_sdk_resume",
        "AI SDK: replay the active turn (useChat resume); 204 if none.",
        {200: _UI_STREAM, 204: Reply("The chat has no active turn.")},
    ),
    Op(
        "POST",
        _C + "/stop",
        AiSdkChat.stop,
        "ai_sdk_stop",
        "AI SDK: cancel the active turn (partial output kept).",
        {200: Reply("Result.", m.ChatStopped), 404: "No such chat."},
    ),
    Op(
        "POST",
        "/api/agui",
        AgUiRun.__call__,
        "agui_run",
        "AG-UI: run the agent on RunAgentInput, answering AG-UI events.",
        {
            200: Reply("AG-UI events, data: <event JSON> each.", media="text/event-stream"),
            400: "Invalid body, threadId, runId or messages.",
            404: "The thread belongs to another user.",
            409: "Busy: a live turn owns the thread.",
        },
        body=m.RunAgentInput,
    ),
)


# -- routes from the table ---------------------------------------------------------------


def _bind(function: Endpoint, instances: Iterable[object]) -> Endpoint:
    """``function`` (an unbound endpoint method) bound to the instance of its class."""
    for instance in instances:
        bound = getattr(instance, function.__name__, None)
        if bound is not None and getattr(bound, "__func__", None) is function:
            return cast(Endpoint, bound)
    raise ValueError(f"no instance given for endpoint {function.__qualname__}")


def _with_body(handler: Endpoint, op: Op) -> Endpoint:
    """``handler(request, body)`` as ``endpoint(request)``: the body read and validated
    through the operation's model first."""
    model = op.body
    assert model is not None
    empty_ok = op.body_optional

    async def endpoint(request: Request) -> Response:
        return await handler(request, await read_body(request, model, empty_ok=empty_ok))

    endpoint.__name__ = op.name
    return endpoint


def build_routes(
    instances: Iterable[object],
    guard: Callable[..., Endpoint],
    operations: Sequence[Op] = OPERATIONS,
) -> list[BaseRoute]:
    """One Starlette route per path of ``operations``, its methods dispatched by a
    :class:`~starlette.endpoints.HTTPEndpoint` (so a wrong method is 405 with every
    allowed method in ``Allow``).

    :param instances: the objects whose methods the operations name.
    :param guard: ``guard(endpoint, query_token=bool)``: the authorizing wrapper
        (:meth:`Api.guard`), applied to every operation but the public ones.
    :raises ValueError: for an operation whose endpoint's class has no instance, or a
        (method, path) listed twice.
    """
    instances = list(instances)
    paths: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    for op in operations:
        handler = _bind(op.endpoint, instances)
        if op.body is not None:
            handler = _with_body(handler, op)
        if op.auth != "none":
            handler = guard(handler, query_token=op.auth == "query")
        methods = paths.setdefault(op.path, {})
        method = op.method.lower()
        if method in methods:
            raise ValueError(f"{op.method} {op.path} is listed twice in the route table")
        methods[method] = staticmethod(handler)
        names.setdefault(op.path, op.name)
    return [
        Route(path, type(names[path], (HTTPEndpoint,), methods), name=names[path])
        for path, methods in paths.items()
    ]
