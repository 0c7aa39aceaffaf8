"""The HTTP/SSE edge: a Starlette application over a :class:`~runtime.Runtime`.

Needs the ``server`` extra (Starlette, sse-starlette, uvicorn); ``import runtime``
never imports this module. Routes (described at ``/openapi.json``)::

    POST   /api/sessions                        new session (201), {"title"?, "session_id"?}
    GET    /api/sessions?limit=&cursor=         page of sessions
    GET    /api/sessions/{id}[?metadata_only=1] one session (stale streams repaired)
    PATCH  /api/sessions/{id}                   {"title"}: rename; 409 while a turn runs
    GET    /api/sessions/{id}/status            {active_stream_id, live, pending_…}
    GET    /api/sessions/{id}/streams           the session's streams, oldest first
    DELETE /api/sessions/{id}                   204; 409 while a live stream owns it
    POST   /api/sessions/{id}/turns             {"message", "metadata"?, "config"?} -> 202
                                                {stream_id, …} (or the SSE events at once
                                                with Accept: text/event-stream); 409 busy
    POST   /api/sessions/{id}/resume            continue an interrupted turn -> 202
                                                {stream_id, session_id}; 409 busy or
                                                nothing_to_resume
    GET    /api/streams/{stream_id}/events      Server-Sent Events, resumable
    POST   /api/streams/{stream_id}/cancel      cancel a live turn
    POST   /api/chat, GET /api/chat/{id}[/stream], POST /api/chat/{id}/stop
                                                the Vercel AI SDK's UI message stream
    POST   /api/agui                            AG-UI (RunAgentInput in, events out)
    GET    /                                    the demo page
    GET    /openapi.json                        the OpenAPI document

Errors are JSON ``{"error": <code>, "detail": <text>}``: 400 bad input or a ``Host``
not allowed, 401 missing or wrong token, 404 unknown, 409 busy, 413 body too large,
415 a JSON route's body not sent as ``application/json``, 503 store failure.

Mount it in an existing app with :func:`mount` (``mount(app, "/agent", create_app(rt))``),
which also lists its routes in a FastAPI host's ``/docs``, or ``app.mount(...)``; a mounted app's
lifespan does not run, so enter the runtime in the host app's lifespan
(``async with rt: yield``), as ``examples/fastapi_app.py`` does.
"""

from __future__ import annotations

import math
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ._http._agui import AgUiRun
from ._http._ai_sdk import AiSdkChat
from ._http._cors import check_origins, cors_middleware
from ._http._errors import EXCEPTION_HANDLERS, JSONResponse
from ._http._host import HostCheck, allowed_hosts_from
from ._http._mount import mount
from ._http._openapi import openapi_document
from ._http._owners import OWNER_KEY, Authenticate, Owners
from ._http._routes import Api, by_method
from ._http._sse import StreamEvents
from ._runtime import Runtime

__all__ = ["OWNER_KEY", "Authenticate", "create_app", "mount"]

#: The demo page's files (package data).
STATIC_DIR = Path(__file__).parent / "static"


def create_app(
    runtime: Runtime,
    *,
    api_token: str | None = None,
    heartbeat: float = 15.0,
    retry_ms: int = 2000,
    cors_origins: Sequence[str] = (),
    allowed_hosts: Sequence[str] | None = None,
    send_timeout: float | None = 30.0,
    authenticate: Authenticate | None = None,
) -> Starlette:
    """A Starlette application serving ``runtime`` over HTTP and Server-Sent Events.

    Its lifespan enters the runtime (opening the store and running recovery) and leaves
    it on shutdown (live turns get the runtime's ``shutdown_grace`` seconds, then are
    cancelled with their partial output kept). If the runtime is already running (you
    entered it yourself, e.g. in a host app's lifespan), the lifespan leaves it alone.

    :param runtime: the runtime to serve.
    :param api_token: bearer token required by every ``/api`` route (the SSE route also
        takes ``?token=``); defaults to the ``RUNTIME_API_TOKEN`` environment variable;
        ``None`` and unset (or empty) mean no authentication.
    :param heartbeat: seconds between SSE comment heartbeats (finite, > 0).
    :param retry_ms: reconnection delay hinted to SSE clients, milliseconds (>= 0).
    :param cors_origins: origins (``https://app.example``, or ``*``) whose browser
        pages may call the API (CORS, Starlette's ``CORSMiddleware``); empty: none.
    :param allowed_hosts: ``Host`` names the app answers to (``*`` for any,
        ``*.example.com`` for subdomains); others get 400 ``invalid_host``, which stops
        DNS rebinding. Default: ``$RUNTIME_ALLOWED_HOSTS`` (comma-separated), else the
        loopback names ``localhost``, ``127.0.0.1``, ``[::1]``.
    :param send_timeout: seconds one SSE write may wait for a client that does not
        read (finite, > 0), or ``None`` for no limit. A stalled reader is then sent a
        ``lagged`` ending naming the seq to resume after, and its response closed.
    :param authenticate: per-user isolation: ``authenticate(request)`` (sync or async)
        returns the request's principal, a non-empty ``str``, or ``None`` for 401. Each
        session then belongs to the principal that created it (its metadata key
        ``"runtime.owner"``); listings show the caller's sessions only, and another
        principal's session or stream answers 404 on every route. Replaces the shared
        token (pass one or the other).
    :raises ValueError: for an empty ``api_token``, a bad ``heartbeat``, ``retry_ms``,
        ``allowed_hosts``, ``send_timeout`` or ``cors_origins``, or both ``api_token``
        and ``authenticate``.
    :raises TypeError: if ``authenticate`` is not callable.
    """
    if authenticate is not None:
        if not callable(authenticate):
            raise TypeError(f"invalid authenticate {authenticate!r}: must be callable")
        if api_token is not None:
            raise ValueError(
                "pass api_token or authenticate, not both: the hook does the authentication"
            )
    if api_token is None:
        if authenticate is None:
            api_token = os.environ.get("RUNTIME_API_TOKEN") or None
    elif not isinstance(api_token, str) or not api_token:
        raise ValueError(f"invalid api_token {api_token!r}: must be a non-empty string or None")
    if (
        isinstance(heartbeat, bool)
        or not isinstance(heartbeat, int | float)
        or not (math.isfinite(heartbeat) and heartbeat > 0)
    ):
        raise ValueError(f"invalid heartbeat {heartbeat!r}: must be a finite number of seconds > 0")
    if isinstance(retry_ms, bool) or not isinstance(retry_ms, int) or retry_ms < 0:
        raise ValueError(f"invalid retry_ms {retry_ms!r}: must be an integer >= 0 (milliseconds)")
    origins = check_origins(cors_origins)

    if send_timeout is not None and (
        isinstance(send_timeout, bool)
        or not isinstance(send_timeout, int | float)
        or not (math.isfinite(send_timeout) and send_timeout > 0)
    ):
        raise ValueError(
            f"invalid send_timeout {send_timeout!r}: must be a finite number of seconds > 0 or None"
        )
    hosts = allowed_hosts_from(allowed_hosts)

    owners = None if authenticate is None else Owners(runtime, authenticate)
    sse = StreamEvents(
        runtime, heartbeat=float(heartbeat), retry_ms=retry_ms, send_timeout=send_timeout
    )
    api = Api(runtime, api_token, owners, follow=sse.follow)
    chat = AiSdkChat(runtime, heartbeat=float(heartbeat))
    auth = api_token is not None or authenticate is not None

    async def openapi(request: Request) -> Response:
        root = request.scope.get("root_path") or "/"
        return JSONResponse(openapi_document(root, auth=auth))

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    sid = "/api/sessions/{session_id}"
    routes: list[BaseRoute] = [
        Route("/", index, methods=["GET"], name="index"),
        Route("/openapi.json", openapi, methods=["GET"], name="openapi"),
        Route(
            "/api/sessions",
            by_method(GET=api.guard(api.list_sessions), POST=api.guard(api.create_session)),
            methods=["GET", "POST"],
            name="sessions",
        ),
        Route(
            sid,
            by_method(
                GET=api.guard(api.get_session),
                PATCH=api.guard(api.rename_session),
                DELETE=api.guard(api.delete_session),
            ),
            methods=["GET", "PATCH", "DELETE"],
            name="session",
        ),
        Route(
            sid + "/status", api.guard(api.session_status), methods=["GET"], name="session_status"
        ),
        Route(sid + "/streams", api.guard(api.session_streams), methods=["GET"]),
        Route(sid + "/turns", api.guard(api.start_turn), methods=["POST"], name="start_turn"),
        Route(sid + "/resume", api.guard(api.resume_turn), methods=["POST"], name="resume_turn"),
        Route(
            "/api/streams/{stream_id}/events",
            api.guard(sse, query_token=True),
            methods=["GET"],
            name="stream_events",
        ),
        Route(
            "/api/streams/{stream_id}/cancel",
            api.guard(api.cancel_stream),
            methods=["POST"],
            name="cancel_stream",
        ),
        Route("/api/chat", api.guard(chat.send), methods=["POST"], name="chat"),
        Route("/api/chat/{session_id}", api.guard(chat.messages), methods=["GET"]),
        Route("/api/chat/{session_id}/stream", api.guard(chat.resume), methods=["GET"]),
        Route("/api/chat/{session_id}/stop", api.guard(chat.stop), methods=["POST"]),
        Route("/api/agui", api.guard(AgUiRun(runtime, heartbeat=heartbeat)), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if runtime.running:  # embedded: whoever entered it also leaves it
            yield
            return
        async with runtime:
            yield

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(HostCheck, allowed=hosts), *cors_middleware(origins)],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.runtime = runtime
    app.state.openapi_document = lambda root: openapi_document(root, auth=auth)
    return app
