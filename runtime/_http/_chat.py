"""What the chat-protocol endpoints (Vercel AI SDK, AG-UI) share: a client-chosen
conversation id mapped to a session created on first use, the per-turn ``metadata``
and ``config`` objects, and an SSE response that ends cleanly when the client leaves.

The protocols send the whole conversation with every request; the runtime keeps the
conversation itself, so only the last user message starts the turn and the rest of the
client's copy is ignored, except for how many messages it holds when the client says it
regenerates or edits (the stored history is then rewound to match).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import orjson
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request

from .._events import Event
from .._exceptions import SessionNotFound, SubscriberLagged
from .._runtime import Runtime
from .._session import Message
from ._owners import OWNER_KEY, owner_of

__all__ = ["ChatProtocol", "chat_session", "data_line", "sse_response"]


def data_line(value: dict[str, Any]) -> bytes:
    """One SSE message ``data: <JSON>`` (the chat protocols send no ``id:``/``event:``)."""
    return b"data: " + orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=str) + b"\n\n"


async def chat_session(runtime: Runtime, session_id: str, principal: str | None = None) -> str:
    """The session of a client's conversation id (already validated as a session id);
    a new (in-memory) session is made if none exists yet.

    :param principal: the caller, when the app isolates users: a new session is
        recorded as theirs, and another principal's session is not found.
    :raises SessionNotFound: for another principal's session (404, as for any id).
    """
    if not await runtime.store.exists(session_id):
        metadata = None if principal is None else {OWNER_KEY: principal}
        await runtime.create_session(session_id=session_id, metadata=metadata)
    elif principal is not None and (
        owner_of(await runtime.store.load_metadata(session_id)) != principal
    ):
        raise SessionNotFound(f"no session {session_id!r}")
    return session_id


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


class ChatProtocol:
    """What a chat-protocol endpoint does around its own event mapping: start a turn
    in the conversation's session, and answer a stream's events rendered in the
    protocol's format.

    :param runtime: the runtime whose sessions are the conversations.
    :param heartbeat: seconds between SSE comment heartbeats.
    """

    def __init__(self, runtime: Runtime, *, heartbeat: float) -> None:
        self.runtime = runtime
        self.heartbeat = heartbeat

    async def start(
        self,
        request: Request,
        chat_id: str,
        text: str,
        *,
        metadata: dict[str, Any] | None,
        config: dict[str, Any] | None,
        rewind: Callable[[str, list[Message]], int | None] | None = None,
    ) -> tuple[str, str]:
        """Start a turn with ``text`` in the session of ``chat_id`` (made on first use,
        the caller's when users are isolated) → ``(session_id, stream_id)``.

        :param rewind: for a regenerate or an edit: ``rewind(session_id, messages)``
            maps the stored messages to the ``rewind_to`` of
            :meth:`Runtime.start_turn` (``None``: keep them all).
        :raises SessionBusy: while the session has a live turn (409).
        :raises HistoryMismatch: from ``rewind`` or the start (409).
        """
        principal = getattr(request.state, "principal", None)
        session_id = await chat_session(self.runtime, chat_id, principal)
        rewind_to = None
        if rewind is not None:
            stored = await self.runtime.get_session(session_id)
            rewind_to = rewind(session_id, stored.messages)
        stream_id = await self.runtime.start_turn(
            session_id, text, metadata=metadata, config=config, rewind_to=rewind_to
        )
        return session_id, stream_id

    def stream(
        self,
        stream_id: str,
        render: Callable[[Sequence[Event]], bytes],
        lagged: Callable[[SubscriberLagged], bytes],
        headers: Mapping[str, str] | None = None,
    ) -> EventSourceResponse:
        """The SSE response of a stream from its first event: ``render(batch)`` per
        batch of events (skipped when empty), ``lagged(exc)`` to end a response whose
        subscriber fell behind."""

        async def body() -> AsyncIterator[bytes]:
            events = self.runtime.events(stream_id, 0)
            try:
                while batch := await events.next_batch():
                    chunk = render(batch)
                    if chunk:
                        yield chunk
            except SubscriberLagged as exc:
                yield lagged(exc)

        return sse_response(body(), heartbeat=self.heartbeat, headers=headers)
