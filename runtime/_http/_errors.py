"""JSON error responses ``{"error": <code>, "detail": <text>}`` and the mapping from
the library's error tree to HTTP status codes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .._exceptions import (
    Error,
    EventLogUnavailable,
    HistoryMismatch,
    InvalidCursor,
    InvalidSessionId,
    NothingToResume,
    SessionBusy,
    SessionNotFound,
    StoreClosed,
    StoreError,
    StreamNotFound,
    SubscriberLagged,
)

__all__ = [
    "EXCEPTION_HANDLERS",
    "ApiError",
    "JSONResponse",
    "from_library_error",
    "http_exception",
    "server_error",
]


class JSONResponse(Response):
    """``application/json`` rendered with orjson (non-string dict keys allowed)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class ApiError(Exception):
    """An error answer: HTTP ``status``, a stable machine ``error`` code, a human
    ``detail`` naming the value and the rule, and optional extra JSON fields."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self) -> JSONResponse:
        """The error as a JSON response."""
        body = {"error": self.error, "detail": self.detail, **self.extra}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def from_library_error(exc: Error) -> ApiError | None:
    """The HTTP answer for an error of the library's tree, or ``None`` if it has none
    (then it is a server error)."""
    if isinstance(exc, InvalidSessionId):
        return ApiError(400, "invalid_session_id", str(exc))
    if isinstance(exc, InvalidCursor):
        return ApiError(400, "invalid_cursor", str(exc))
    if isinstance(exc, SessionNotFound):
        return ApiError(404, "session_not_found", str(exc))
    if isinstance(exc, StreamNotFound):
        return ApiError(404, "stream_not_found", str(exc))
    if isinstance(exc, SessionBusy):
        return ApiError(
            409,
            "session_busy",
            str(exc),
            session_id=exc.session_id,
            active_stream_id=exc.active_stream_id,
        )
    if isinstance(exc, HistoryMismatch):
        return ApiError(409, "history_mismatch", str(exc), session_id=exc.session_id)
    if isinstance(exc, NothingToResume):
        return ApiError(409, "nothing_to_resume", str(exc), session_id=exc.session_id)
    if isinstance(exc, SubscriberLagged):
        return ApiError(
            410, "subscriber_lagged", str(exc), first_retained_seq=exc.first_retained_seq
        )
    if isinstance(exc, EventLogUnavailable):
        return ApiError(503, "event_log_unavailable", str(exc))
    if isinstance(exc, StoreClosed):
        return ApiError(503, "unavailable", f"the runtime is not running: {exc}")
    if isinstance(exc, StoreError):
        return ApiError(503, "store_error", f"{type(exc).__name__}: {exc}")
    return None


async def http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no route) and 405 (wrong method) as JSON errors."""
    status = getattr(exc, "status_code", 500)
    codes = {404: "not_found", 405: "method_not_allowed"}
    detail = getattr(exc, "detail", None) or "error"
    if status == 404:
        detail = f"no route for {request.method} {request.url.path}"
    elif status == 405:
        detail = f"method {request.method} is not allowed on {request.url.path}"
    headers = getattr(exc, "headers", None)
    code = codes.get(status, "http_error")
    return ApiError(status, code, str(detail), headers=headers).response()


async def server_error(request: Request, exc: Exception) -> Response:
    """A bug or an unexpected failure: JSON 500 that names the exception class only."""
    return ApiError(
        500, "internal_error", f"unexpected {type(exc).__name__}; see the server log"
    ).response()


async def api_error(request: Request, exc: Exception) -> Response:
    """An :class:`ApiError` raised by a route: its JSON answer."""
    assert isinstance(exc, ApiError)
    return exc.response()


async def library_error(request: Request, exc: Exception) -> Response:
    """An error of the library's tree raised by a route: its HTTP answer, or, for one
    without (a bug), re-raised to Starlette's server-error handler (logged, JSON 500)."""
    assert isinstance(exc, Error)
    mapped = from_library_error(exc)
    if mapped is None:
        raise exc
    return mapped.response()


#: Starlette ``exception_handlers`` of the app: the error tree mapped once for every route.
EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApiError: api_error,
    Error: library_error,
    HTTPException: http_exception,
    500: server_error,
}
