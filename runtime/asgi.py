"""The HTTP/SSE edge: a Starlette application over a :class:`~runtime.Runtime`.

Needs the ``server`` extra (Starlette, sse-starlette, uvicorn, pydantic); ``import runtime``
never imports this module. The routes (sessions, turns, resumable SSE streams, cancel,
the Vercel AI SDK's ``/api/chat``, AG-UI's ``/api/agui``, the demo page and
``/openapi.json``) are listed once, in ``runtime._http._table.OPERATIONS``, from which
both the app's routes and its OpenAPI document are made; read them at ``/openapi.json``.

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
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from ._http._agui import AgUiRun
from ._http._ai_sdk import AiSdkChat
from ._http._cors import check_origins, cors_middleware
from ._http._errors import EXCEPTION_HANDLERS
from ._http._host import HostCheck, allowed_hosts_from
from ._http._mount import mount
from ._http._openapi import openapi_document
from ._http._owners import OWNER_KEY, Authenticate, Owners
from ._http._routes import Api
from ._http._sse import SERVER_SEND, StreamEvents
from ._http._table import Pages, build_routes
from ._runtime import Runtime

__all__ = ["OWNER_KEY", "Authenticate", "create_app", "mount"]

#: The demo page's files (package data).
STATIC_DIR = Path(__file__).parent / "static"


class _App(Starlette):
    """The runtime's Starlette app; it also hands the ``send`` it was called with to its
    SSE responses (``scope[SERVER_SEND]``), which send their body chunks through it,
    past the send wrappers of the middleware in between (Starlette's error handlers
    only note the start message, CORS only adds its headers to it): a coroutine per
    wrapper less per subscriber per burst (docs/benchmarks.md, W5)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[SERVER_SEND] = send
        await super().__call__(scope, receive, send)


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
    suspended for a resume or cancelled, as its ``on_shutdown`` says). If the runtime
    is already running (you entered it yourself, e.g. in a host app's lifespan), the
    lifespan leaves it alone.

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

    pages = Pages(STATIC_DIR, lambda root: openapi_document(root, auth=auth))
    agui = AgUiRun(runtime, heartbeat=float(heartbeat))
    routes = build_routes((api, chat, sse, agui, pages), api.guard)
    routes.append(Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if runtime.running:  # embedded: whoever entered it also leaves it
            yield
            return
        async with runtime:
            yield

    app = _App(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(HostCheck, allowed=hosts), *cors_middleware(origins)],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.runtime = runtime
    app.state.openapi_document = pages.document
    return app
