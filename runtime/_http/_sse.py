"""``GET /api/streams/{stream_id}/events``: a stream as Server-Sent Events.

Wire format (WHATWG HTML, "Server-sent events"): first a ``retry:`` hint, then one
message per event, ``id: <seq>`` / ``event: <type>`` / ``data: <json>``, and a
``:`` comment heartbeat while nothing happens. The response ends after ``stream.end``.
A reconnecting ``EventSource`` sends ``Last-Event-ID`` and gets exactly the events
after it. Disconnecting only ends this response; the turn runs on in the runtime's
task group (sse-starlette runs the body and a disconnect listener in one task group,
whichever ends first cancels the other).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from .._events import STREAM_END, Event, encode_sse
from .._exceptions import StreamNotFound, SubscriberLagged
from .._runtime import Runtime
from ._errors import ApiError
from ._params import resume_after, stream_id_param

__all__ = ["StreamEvents"]

logger = logging.getLogger("runtime.asgi")


def _heartbeat() -> ServerSentEvent:
    return ServerSentEvent(comment="heartbeat", sep="\n")


class _EventStream(EventSourceResponse):
    """An :class:`EventSourceResponse` that always completes its HTTP response.

    On server shutdown sse-starlette cancels the body mid-stream and returns without the
    final (empty) body message; uvicorn then logs "ASGI callable returned without
    completing response" and the client sees a truncated chunked body. Completing it
    here gives the client a clean end, after which ``EventSource`` reconnects with its
    ``Last-Event-ID``.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = completed = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, completed
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                completed = True
            await send(message)

        await super().__call__(scope, receive, tracking_send)
        if started and not completed:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


class StreamEvents:
    """The SSE endpoint.

    :param runtime: the runtime whose streams are served.
    :param heartbeat: seconds between comment heartbeats (> 0).
    :param retry_ms: reconnection delay hinted to clients, milliseconds (>= 0).
    """

    def __init__(self, runtime: Runtime, *, heartbeat: float, retry_ms: int) -> None:
        self.runtime = runtime
        self.heartbeat = heartbeat
        self.retry_ms = retry_ms

    async def __call__(self, request: Request) -> Response:
        """Validate everything that can fail before the response starts (400 bad
        ``Last-Event-ID``/``after_seq``/id, 404 unknown stream, 410 lagged); answer 204
        when a finished stream has nothing after the resume point, which also tells an
        ``EventSource`` to stop reconnecting."""
        stream_id = stream_id_param(request)
        after_seq, source = resume_after(request)
        rt = self.runtime
        events = rt.events(stream_id, after_seq)  # StreamNotFound for a foreign id
        newest = self._newest_live_seq(stream_id)
        if newest is not None and after_seq > newest:
            raise ApiError(
                400,
                "invalid_" + source.lower().replace("-", "_"),
                f"invalid {source} {after_seq}: stream {stream_id!r} has no event after "
                f"seq {newest} yet, so the resume point must be <= {newest}",
            )
        first: Event | None = None
        if newest is None or after_seq < newest:
            # Events after the resume point exist (in memory or in the store), so this
            # does not wait: a lagged subscriber (410), an unknown stream (404) or a
            # finished stream with nothing left (204) is answered before the headers.
            first = await anext(events, None)
            if first is None:
                return Response(status_code=204)
        return _EventStream(
            self._body(stream_id, first, events),
            ping=self.heartbeat,
            ping_message_factory=_heartbeat,
            sep="\n",
        )

    def _newest_live_seq(self, stream_id: str) -> int | None:
        """The newest ``seq`` of a live stream, or ``None`` if it is not live here."""
        if not self.runtime.is_live(stream_id):
            return None
        try:
            return self.runtime.broker.get(stream_id).last_seq
        except StreamNotFound:  # pragma: no cover - a live stream always has its log
            return None

    async def _body(
        self, stream_id: str, first: Event | None, events: AsyncIterator[Event]
    ) -> AsyncIterator[bytes]:
        yield b"retry: %d\n\n" % self.retry_ms
        if first is not None:
            yield encode_sse(first)
            if first.type == STREAM_END:
                return
        try:
            async for event in events:
                yield encode_sse(event)
                if event.type == STREAM_END:
                    return
        except SubscriberLagged as exc:
            # The client reconnects with its Last-Event-ID and gets the answer (410) then.
            logger.warning("SSE subscriber of %s lagged: %s", stream_id, exc)
            yield b": lagged; reconnect to resume\n\n"
