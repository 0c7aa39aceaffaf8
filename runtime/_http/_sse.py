"""``GET /api/streams/{stream_id}/events``: a stream as Server-Sent Events.

Wire format (WHATWG HTML, "Server-sent events"): first a ``retry:`` hint, then one
message per event, ``id: <seq>`` / ``event: <type>`` / ``data: <json>``, and a
``:`` comment heartbeat while nothing happens. The response ends after ``stream.end``.
A reconnecting ``EventSource`` sends ``Last-Event-ID`` and gets exactly the events
after it. Every batch of events a subscriber wakes up to goes out as one body chunk
(many SSE messages, one ASGI ``send``), and the bytes of a batch are shared by the
subscribers that read the same batch, so fan-out costs one send per subscriber per
burst and one encoding per event. Disconnecting only ends this response; the turn
runs on in the runtime's task group (sse-starlette runs the body and a disconnect
listener in one task group, whichever ends first cancels the other).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any

import anyio
import orjson
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from .._events import Event, encode_sse
from .._exceptions import EventLogUnavailable, StreamNotFound, SubscriberLagged
from .._runtime import Runtime
from .._subscription import Subscription
from .._timer import asyncio_loop
from ._errors import ApiError
from ._params import resume_after, stream_id_param

__all__ = ["StreamEvents"]

logger = logging.getLogger("runtime.asgi")


#: Most events sent in one body chunk (a replay of a long stream is split).
CHUNK_EVENTS = 256
#: Most bytes of event JSON in one body chunk (a chunk holds at least one event). What a
#: stalled reader's connection can pin in the server's transport buffer is about this.
CHUNK_BYTES = 64 * 1024


def chunk_pieces(batch: Sequence[Event]) -> Iterator[Sequence[Event]]:
    """``batch`` cut into consecutive pieces of at most :data:`CHUNK_EVENTS` events and
    :data:`CHUNK_BYTES` bytes of JSON (a larger single event is a piece of its own).
    The cut depends only on the events, so subscribers reading the same batch get the
    same pieces (and share their encoding)."""
    if len(batch) == 1:
        yield batch
        return
    start = size = 0
    for i, event in enumerate(batch):
        n = len(event.json())
        if i > start and (i - start >= CHUNK_EVENTS or size + n > CHUNK_BYTES):
            yield batch[start:i]
            start, size = i, 0
        size += n
    yield batch[start:] if start else batch


def _heartbeat() -> ServerSentEvent:
    return ServerSentEvent(comment="heartbeat", sep="\n")


class BatchEncoder:
    """The SSE bytes of a batch of events (:func:`~runtime._events.encode_sse` of each,
    concatenated), remembered for the last ``size`` batches of shared events.

    Subscribers that keep up with a stream wake on the same publish and read the same
    batch (``seq`` range) from its log; the first of them encodes it, the others get
    the same bytes object. Only batches whose events are the same for every subscriber
    (:attr:`Subscription.from_log`) are remembered: the ending made up for a dead
    stream depends on the resume point and is encoded each time.

    :param size: batches remembered (>= 1), oldest forgotten first.
    :param max_bytes: longest chunk remembered, bytes; so at most ``size * max_bytes``
        bytes are held.
    :raises ValueError: if ``size`` < 1 or ``max_bytes`` < 0.
    """

    def __init__(self, size: int = 64, max_bytes: int = 256 * 1024) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"invalid size {size!r}: must be an integer >= 1")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"invalid max_bytes {max_bytes!r}: must be an integer >= 0")
        self.size = size
        self.max_bytes = max_bytes
        self._chunks: dict[tuple[str, int, int], bytes] = {}

    def encode(self, batch: Sequence[Event], *, shared: bool) -> bytes:
        """The SSE messages of ``batch`` (non-empty, consecutive events of one stream)
        as one bytes chunk.

        :param shared: whether every subscriber of the stream gets these same events
            for these ``seq`` (then the chunk is remembered and reused).
        :raises IndexError: if ``batch`` is empty.
        :raises TypeError: if an event's ``data`` is not JSON-ready.
        """
        if not shared:
            return b"".join([encode_sse(event) for event in batch])
        first = batch[0]
        key = (first.stream_id, first.seq, batch[-1].seq)
        chunks = self._chunks
        chunk = chunks.get(key)
        if chunk is None:
            chunk = b"".join([encode_sse(event) for event in batch])
            if len(chunk) <= self.max_bytes:
                if len(chunks) >= self.size:
                    del chunks[next(iter(chunks))]
                chunks[key] = chunk
        return chunk

    def chunks(self, batch: Sequence[Event], *, shared: bool) -> Iterable[tuple[bytes, int]]:
        """``batch`` as the body chunks to send, ``(chunk, seq of its last event)`` each:
        :func:`chunk_pieces` of it, each piece :meth:`encode`-d when the caller reaches
        it (a long replay is never encoded whole).

        A shared batch that is one piece and was already encoded (another subscriber
        read the same ``seq`` range of the stream) is answered from memory without
        cutting it again, so the subscribers of a burst after the first pay one lookup.

        :param shared: as for :meth:`encode`.
        :raises IndexError: if ``batch`` is empty.
        """
        if shared:
            first, last = batch[0], batch[-1]
            chunk = self._chunks.get((first.stream_id, first.seq, last.seq))
            if chunk is not None:
                return ((chunk, last.seq),)
        return ((self.encode(piece, shared=shared), piece[-1].seq) for piece in chunk_pieces(batch))


class _Progress:
    """How far one response got: the newest ``seq`` whose chunk was sent."""

    __slots__ = ("sent_seq",)

    def __init__(self, sent_seq: int) -> None:
        self.sent_seq = sent_seq


def lagged_ending(resume_after_seq: int, detail: str) -> bytes:
    """The SSE message that ends a response whose reader cannot keep up: ``event:
    lagged`` with ``{"error": "subscriber_lagged", "resume_after_seq", "detail"}`` and
    no ``id:``, so the client's ``Last-Event-ID`` stays the last event it got and a
    reconnect resumes right after it."""
    return _ending(b"lagged", "subscriber_lagged", resume_after_seq, detail)


def unavailable_ending(resume_after_seq: int, detail: str) -> bytes:
    """The SSE message that ends a response when the shared event log (Redis) cannot be
    reached: ``event: unavailable`` with ``{"error": "event_log_unavailable",
    "resume_after_seq", "detail"}``, no ``id:``; a reconnect once it is back resumes
    right after the last event the client got (the turn itself goes on)."""
    return _ending(b"unavailable", "event_log_unavailable", resume_after_seq, detail)


def _ending(event: bytes, error: str, resume_after_seq: int, detail: str) -> bytes:
    data = orjson.dumps({"error": error, "resume_after_seq": resume_after_seq, "detail": detail})
    return b"event: " + event + b"\ndata: " + data + b"\n\n"


class _EventStream(EventSourceResponse):
    """An :class:`EventSourceResponse` that always completes its HTTP response, and
    ends a stalled reader's response.

    On server shutdown sse-starlette cancels the body mid-stream and returns without the
    final (empty) body message; uvicorn then logs "ASGI callable returned without
    completing response" and the client sees a truncated chunked body. Completing it
    here gives the client a clean end, after which ``EventSource`` reconnects with its
    ``Last-Event-ID``.

    A client that stops reading blocks every write once the socket buffers are full.
    With ``send_timeout`` set, a write that waits longer ends the response: the reader
    is sent (if it still can take it) a :func:`lagged_ending` and may resume; its
    subscription and buffers are freed either way.
    """

    def __init__(self, *args: Any, progress: _Progress, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.progress = progress
        #: the event loop's time when the write in progress began (``None``: none is)
        self._sending_since: float | None = None
        self._stalled = False
        self._watch: anyio.CancelScope | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio_loop() if self.send_timeout is not None else None
        if loop is None:  # no timeout, or not asyncio: sse-starlette's way
            await self._respond(scope, receive, send)
            return
        # One cancel scope and one timer per response instead of a cancel scope per
        # write: the watchdog looks at the write in progress every ``send_timeout``.
        self._loop = loop
        self._watch = anyio.CancelScope()  # entered in _respond; cancellable before that
        self._timer = loop.call_later(self.send_timeout or 0.0, self._check_stall)
        try:
            await self._respond(scope, receive, send)
        finally:
            self._timer.cancel()
            self._watch = None

    def _check_stall(self) -> None:
        """The watchdog's timer: end the response if its write in progress has waited
        ``send_timeout`` seconds, else look again when that write (or the next one)
        would reach it."""
        loop, timeout, since = self._loop, self.send_timeout, self._sending_since
        if loop is None or timeout is None or self._watch is None:
            return
        now = loop.time()
        if since is not None and now - since >= timeout:
            self._stalled = True
            self._watch.cancel()
            return
        at = (since if since is not None else now) + timeout
        self._timer = loop.call_at(at, self._check_stall)

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = completed = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, completed
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                completed = True
            await send(message)

        try:
            if self._watch is None:
                await super().__call__(scope, receive, tracking_send)
            else:
                with self._watch:
                    await super().__call__(scope, receive, tracking_send)
                if self._stalled:  # the watchdog cancelled the response
                    raise SendTimeoutError()
        except SendTimeoutError:
            seq = self.progress.sent_seq
            logger.warning(
                "SSE reader stalled for %ss: response ended after seq %d", self.send_timeout, seq
            )
            with anyio.move_on_after(self.send_timeout or 1.0):
                await send(
                    {
                        "type": "http.response.body",
                        "body": lagged_ending(
                            seq,
                            f"the client read nothing for {self.send_timeout}s; "
                            f"reconnect to resume after seq {seq}",
                        ),
                        "more_body": False,
                    }
                )
                completed = True
            return
        if started and not completed:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        """sse-starlette (3.x) sends each chunk and heartbeat inside
        ``anyio.move_on_after(send_timeout)``, a cancel scope per write even when there
        is no timeout: a tenth of the server's CPU when one stream fans out to 1,000
        subscribers (docs/benchmarks.md, W5). With no timeout, send directly; on
        asyncio, note when the write began for the response's watchdog
        (:meth:`_check_stall`); elsewhere use sse-starlette's scope."""
        if self.send_timeout is None:
            await send(message)
        elif self._loop is not None:
            self._sending_since = self._loop.time()
            try:
                await send(message)
            finally:
                self._sending_since = None
        else:
            await super()._send_with_timeout(send, message)


class StreamEvents:
    """The SSE endpoint.

    :param runtime: the runtime whose streams are served.
    :param heartbeat: seconds between comment heartbeats (> 0).
    :param retry_ms: reconnection delay hinted to clients, milliseconds (>= 0).
    :param send_timeout: seconds one write may wait for a client that does not read,
        or ``None`` for no limit (see :class:`_EventStream`).
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        heartbeat: float,
        retry_ms: int,
        send_timeout: float | None = None,
    ) -> None:
        self.runtime = runtime
        self.heartbeat = heartbeat
        self.retry_ms = retry_ms
        self.send_timeout = send_timeout
        self._encoder = BatchEncoder()

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
        first: list[Event] = []
        if newest is None or after_seq < newest:
            # Events after the resume point exist (in memory or in the store), so this
            # does not wait: a lagged subscriber (410), an unknown stream (404) or a
            # finished stream with nothing left (204) is answered before the headers.
            first = await events.next_batch()
            if not first:
                return Response(status_code=204)
        progress = _Progress(after_seq)
        return _EventStream(
            self._body(stream_id, first, events, progress),
            ping=self.heartbeat,
            ping_message_factory=_heartbeat,
            sep="\n",
            send_timeout=self.send_timeout,
            progress=progress,
        )

    def follow(self, stream_id: str) -> Response:
        """A stream from its first event, e.g. one this request just started."""
        progress = _Progress(0)
        return _EventStream(
            self._body(stream_id, [], self.runtime.events(stream_id, 0), progress),
            ping=self.heartbeat,
            ping_message_factory=_heartbeat,
            sep="\n",
            send_timeout=self.send_timeout,
            progress=progress,
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
        self, stream_id: str, first: list[Event], events: Subscription, progress: _Progress
    ) -> AsyncIterator[bytes]:
        """The response body: the ``retry:`` hint with the first batch, then one chunk
        per batch until ``stream.end``. A long batch (a replay) goes out in pieces
        (:func:`chunk_pieces`: at most :data:`CHUNK_EVENTS` events and
        :data:`CHUNK_BYTES` bytes), each sent (and flow-controlled) before the next is
        encoded."""
        chunks = self._encoder.chunks
        head = b"retry: %d\n\n" % self.retry_ms
        batch = first
        try:
            if not batch:
                # Resumed at the live head: nothing to replay, so send the hint at once
                # and wait for the stream to go on (a client that dropped right after
                # the newest event must be followed, not cut off).
                yield head
                head = b""
                batch = await events.next_batch()
            while batch:
                for chunk, last_seq in chunks(batch, shared=events.from_log):
                    if head:
                        chunk, head = head + chunk, b""
                    yield chunk
                    progress.sent_seq = last_seq  # the send of that chunk returned
                batch = await events.next_batch()  # [] after stream.end
        except SubscriberLagged as exc:
            # The client reconnects with its Last-Event-ID; what the store still holds
            # is replayed then, else it is answered 410.
            logger.warning("SSE subscriber of %s lagged: %s", stream_id, exc)
            yield lagged_ending(progress.sent_seq, str(exc))
        except EventLogUnavailable as exc:
            logger.warning("SSE subscriber of %s: %s", stream_id, exc)
            yield unavailable_ending(progress.sent_seq, str(exc))
