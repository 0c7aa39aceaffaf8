"""What the chat-protocol endpoints (Vercel AI SDK, AG-UI) share: a client-chosen
conversation id mapped to a session created on first use, the per-turn ``metadata``
and ``config`` objects, and an SSE response that ends cleanly when the client leaves.

The protocols send the whole conversation with every request; the runtime keeps the
conversation itself, so only the last user message starts the turn and the rest of the
client's copy is ignored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent

from .._exceptions import SessionNotFound
from .._runtime import Runtime
from .._session import validate_session_id
from ._errors import ApiError
from ._owners import OWNER_KEY, owner_of

__all__ = ["chat_session", "optional_object", "sse_response"]


async def chat_session(
    runtime: Runtime, chat_id: object, field: str, principal: str | None = None
) -> str:
    """The session id for a client's conversation id: the id itself, checked against
    ``[A-Za-z0-9_-]{1,64}``; a new (in-memory) session is made if none exists yet.

    :param principal: the caller, when the app isolates users: a new session is
        recorded as theirs, and another principal's session is not found.
    :raises ApiError: 400 ``invalid_body`` naming ``field`` for a bad id.
    :raises SessionNotFound: for another principal's session (404, as for any id).
    """
    try:
        session_id = validate_session_id(chat_id)
    except ValueError as exc:
        raise ApiError(400, "invalid_body", f"invalid {field}: {exc}") from exc
    if not await runtime.store.exists(session_id):
        metadata = None if principal is None else {OWNER_KEY: principal}
        await runtime.create_session(session_id=session_id, metadata=metadata)
    elif principal is not None and (
        owner_of(await runtime.store.load_metadata(session_id)) != principal
    ):
        raise SessionNotFound(f"no session {session_id!r}")
    return session_id


def optional_object(body: Mapping[str, Any], field: str) -> dict[str, Any] | None:
    """``body[field]`` if it is a JSON object, ``None`` if absent or null.

    :raises ApiError: 400 ``invalid_body`` for any other JSON type.
    """
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ApiError(
            400, "invalid_body", f"invalid {field} {value!r}: must be a JSON object or null"
        )
    return value


def _ping() -> ServerSentEvent:
    return ServerSentEvent(comment="ping", sep="\n")


def sse_response(
    body: AsyncIterator[bytes], *, heartbeat: float, headers: Mapping[str, str] | None = None
) -> EventSourceResponse:
    """A ``text/event-stream`` response of ``body`` (ready SSE bytes) with a comment
    heartbeat every ``heartbeat`` seconds. The client leaving ends only the response;
    the turn runs on."""
    return EventSourceResponse(
        body, ping=heartbeat, ping_message_factory=_ping, sep="\n", headers=dict(headers or {})
    )
