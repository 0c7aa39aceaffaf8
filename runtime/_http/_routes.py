"""The JSON routes of the HTTP API and the guard every ``/api`` route runs through
(bearer-token check, then the mapping of errors to JSON answers)."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .._exceptions import SubscriberLagged
from .._runtime import Runtime
from .._session import Session
from ._errors import ApiError, JSONResponse
from ._models import NewSession, NewTurn, Rename
from ._owners import OWNER_KEY, Owners
from ._params import parse_flag, parse_limit, session_id_param, stream_id_param

__all__ = ["Api", "Endpoint", "session_json"]

logger = logging.getLogger("runtime.asgi")

Endpoint = Callable[[Request], Awaitable[Response]]


def session_json(session: Session) -> dict[str, Any]:
    """A session as JSON: every field, ``message_count``, and ``messages`` unless it
    was loaded metadata-only."""
    return session.meta_dict() if session.metadata_only else session.to_dict()


class Api:
    """The ``/api`` endpoints over one :class:`~runtime.Runtime`.

    :param runtime: the runtime the routes drive.
    :param api_token: bearer token every ``/api`` route requires, or ``None`` for none.
    :param owners: per-user isolation (an authentication hook), or ``None``.
    :param follow: the SSE response of a stream from its first event, for a start of a
        turn that asks for ``Accept: text/event-stream`` (send and stream in one
        request); ``None``: such requests get the 202 JSON answer.
    """

    def __init__(
        self,
        runtime: Runtime,
        api_token: str | None,
        owners: Owners | None = None,
        *,
        follow: Callable[[str], Response] | None = None,
    ) -> None:
        self.runtime = runtime
        self.follow = follow
        self._token = None if api_token is None else api_token.encode()
        self.owners = owners

    # -- the guard ----------------------------------------------------------------------

    def authorize(self, request: Request, *, query_token: bool) -> None:
        """Check ``Authorization: Bearer <token>`` (or ``?token=`` where a browser's
        EventSource cannot send headers) in constant time.

        :raises ApiError: 401 ``unauthorized`` with ``WWW-Authenticate: Bearer``.
        """
        if self._token is None:
            return
        supplied: str | None = None
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, value = header.strip().partition(" ")
            if scheme.lower() == "bearer":
                supplied = value.strip()
        if supplied is None and query_token:
            supplied = request.query_params.get("token")
        if supplied is None:
            detail = "missing credentials: send 'Authorization: Bearer <token>'"
            if query_token:
                detail += " or '?token=<token>'"
        elif hmac.compare_digest(supplied.encode(), self._token):
            return
        else:
            detail = "invalid bearer token"
        raise ApiError(
            401, "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="runtime"'}
        )

    def guard(self, handler: Endpoint, *, query_token: bool = False) -> Endpoint:
        """Wrap ``handler`` so that it runs only for an authorized request. Errors it
        raises (:class:`ApiError`, the library's tree) become JSON answers in the app's
        exception handlers (:data:`~runtime._http._errors.EXCEPTION_HANDLERS`)."""

        async def endpoint(request: Request) -> Response:
            self.authorize(request, query_token=query_token)
            if self.owners is not None:
                principal = await self.owners.principal(request)
                request.state.principal = principal
                await self.owners.check(request, principal)
            return await handler(request)

        endpoint.__name__ = getattr(handler, "__name__", type(handler).__name__)
        endpoint.__doc__ = handler.__doc__
        return endpoint

    # -- sessions -------------------------------------------------------------------------

    async def create_session(self, request: Request, body: NewSession) -> Response:
        """``POST /api/sessions`` ``{"title"?, "session_id"?}`` → 201, the new session
        (with the client's id if given; 409 ``session_exists`` if taken). It stays in
        memory until its first turn but can be fetched by id meanwhile."""
        fields: dict[str, Any] = {}
        if body.title is not None:
            fields["title"] = body.title
        if body.session_id is not None:
            fields["session_id"] = session_id = body.session_id
            if await self.runtime.store.exists(session_id):
                raise ApiError(
                    409,
                    "session_exists",
                    f"session id {session_id!r} is taken: choose another",
                    session_id=session_id,
                )
        if self.owners is not None:
            fields["metadata"] = {OWNER_KEY: request.state.principal}
        session = await self.runtime.create_session(**fields)
        location = request.url_for("get_session", session_id=session.session_id).path
        return JSONResponse(session_json(session), status_code=201, headers={"Location": location})

    async def list_sessions(self, request: Request) -> Response:
        """``GET /api/sessions?limit=&cursor=`` → ``{sessions, next_cursor}``."""
        limit = parse_limit(request)
        cursor = request.query_params.get("cursor") or None
        if self.owners is not None:
            page = await self.owners.page(request.state.principal, limit, cursor)
        else:
            page = await self.runtime.list_sessions(limit=limit, cursor=cursor)
        return JSONResponse(
            {"sessions": [s.meta_dict() for s in page.sessions], "next_cursor": page.next_cursor}
        )

    async def get_session(self, request: Request) -> Response:
        """``GET /api/sessions/{id}[?metadata_only=1]`` → the session (a stale stream
        is repaired through a full load first)."""
        session_id = session_id_param(request)
        metadata_only = parse_flag(request, "metadata_only")
        session = await self.runtime.get_session(session_id, metadata_only=metadata_only)
        return JSONResponse(session_json(session))

    async def session_status(self, request: Request) -> Response:
        """``GET /api/sessions/{id}/status`` → ``{active_stream_id, live,
        pending_user_message, pending_started_at, interrupted}``."""
        status = await self.runtime.session_status(session_id_param(request))
        return JSONResponse(status)

    async def rename_session(self, request: Request, body: Rename) -> Response:
        """``PATCH /api/sessions/{id}`` ``{"title"}`` → the session's metadata; 409
        while a live stream owns it."""
        session = await self.runtime.rename_session(session_id_param(request), body.title)
        return JSONResponse(session.meta_dict())

    async def session_streams(self, request: Request) -> Response:
        """``GET /api/sessions/{id}/streams`` → ``{streams: [{stream_id, user_message,
        started_at, live}]}``, oldest first."""
        streams = await self.runtime.session_streams(session_id_param(request))
        return JSONResponse({"streams": streams})

    async def delete_session(self, request: Request) -> Response:
        """``DELETE /api/sessions/{id}`` → 204; 409 while a live stream owns it."""
        await self.runtime.delete_session(session_id_param(request))
        return Response(status_code=204)

    # -- turns and streams ----------------------------------------------------------------

    async def start_turn(self, request: Request, body: NewTurn) -> Response:
        """``POST /api/sessions/{id}/turns`` ``{"message", "metadata"?, "config"?,
        "rewind_to"?}`` → 202 ``{stream_id, session_id, pending_started_at}``, or with
        ``Accept: text/event-stream`` the turn's events at once (200, SSE); 409 with
        ``active_stream_id`` while busy, 409 ``history_mismatch`` for a ``rewind_to``
        past the session's messages. ``metadata`` and ``config`` (JSON objects) reach
        the agent as ``turn.metadata`` and ``turn.config``; ``rewind_to`` is
        :meth:`Runtime.start_turn`'s."""
        session_id = session_id_param(request)
        stream_id = await self.runtime.start_turn(
            session_id,
            body.message,
            metadata=body.metadata,
            config=body.config,
            rewind_to=body.rewind_to,
        )
        if self.follow is not None and "text/event-stream" in request.headers.get("accept", ""):
            return self.follow(stream_id)
        body_out = {
            "stream_id": stream_id,
            "session_id": session_id,
            "pending_started_at": await self._started_at(stream_id),
        }
        location = request.url_for("stream_events", stream_id=stream_id).path
        return JSONResponse(body_out, status_code=202, headers={"Location": location})

    async def resume_turn(self, request: Request) -> Response:
        """``POST /api/sessions/{id}/resume`` → 202 ``{stream_id, session_id}``: the
        interrupted turn continues as the next attempt of the same stream (follow it at
        the ``Location``, with ``Last-Event-ID`` to go on where you were); 409
        ``session_busy`` while a stream is live, 409 ``nothing_to_resume`` when the last
        turn is not an interrupted one."""
        session_id = session_id_param(request)
        stream_id = await self.runtime.resume(session_id)
        location = request.url_for("stream_events", stream_id=stream_id).path
        body_out = {"stream_id": stream_id, "session_id": session_id}
        return JSONResponse(body_out, status_code=202, headers={"Location": location})

    async def _started_at(self, stream_id: str) -> float | None:
        """``pending_started_at`` from the ``stream.started`` event (seq 1), which the
        runtime publishes before ``start_turn`` returns (the turn may be over by now)."""
        try:
            first = await anext(self.runtime.events(stream_id, 0))
        except (StopAsyncIteration, SubscriberLagged):  # pragma: no cover - never expected
            return None
        value = first.data.get("pending_started_at")
        return float(value) if isinstance(value, int | float) else None

    async def cancel_stream(self, request: Request) -> Response:
        """``POST /api/streams/{stream_id}/cancel`` → ``{stream_id, session_id,
        cancelled}``; ``cancelled`` is false for a stream that already ended. Returns
        once the turn's final save is done."""
        stream_id = stream_id_param(request)
        session_id = self.runtime.stream_session(stream_id)
        cancelled = await self.runtime.cancel(stream_id)
        if not cancelled:
            # Not live: 404 unless the stream exists (retained in memory or persisted).
            await anext(self.runtime.events(stream_id, 0), None)
        return JSONResponse(
            {"stream_id": stream_id, "session_id": session_id, "cancelled": cancelled}
        )
