"""``GET /api/streams/{stream_id}/events``: a stream as Server-Sent Events.

Wire format (WHATWG HTML, "Server-sent events"): first a ``retry:`` hint, then one
message per event, ``id: <seq>`` / ``event: <type>`` / ``data: <json>``, and a
``:`` comment heartbeat while nothing happens. The response ends after ``stream.end``.
A reconnecting ``EventSource`` sends ``Last-Event-ID`` and gets exactly the events
after it. Every batch of events a subscriber wakes up to goes out as one body chunk
(many SSE messages, one ASGI ``send``), and the bytes of a batch are shared by the
subscribers that read the same batch, so fan-out costs one send per subscriber per
burst and one encoding per event. Disconnecting only ends this response; the turn
runs on in the runtime's task group.

The response loop is this module's own (:class:`_EventStream`: one task, one timer
and one disconnect listener per response); sse-starlette still provides the headers,
the heartbeat's encoding and the server-shutdown signal.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence

import anyio
import orjson
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.event import ensure_bytes
from sse_starlette.sse import AppStatus, SendTimeoutError
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

try:  # sse-starlette's one shutdown watcher per event loop (private: 3.x)
    from sse_starlette.sse import _ensure_watcher_started_on_this_loop as _start_shutdown_watcher
    from sse_starlette.sse import _get_shutdown_state as _shutdown_state
except ImportError:  # pragma: no cover - another sse-starlette: its own response
    _shutdown_state = None  # type: ignore[assignment]


#: The scope key under which the app puts the ``send`` it was called with (the server's,
#: or a host app's when mounted): body chunks of an SSE response go through it, past
#: the send wrappers of the middleware in between (``runtime.asgi.create_app``).
SERVER_SEND = "runtime.server_send"

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


class _OnShutdown:
    """What sse-starlette's shutdown watcher sets (it calls ``.set()`` on each object
    registered with it): ends one response."""

    __slots__ = ("response",)

    def __init__(self, response: _EventStream) -> None:
        self.response = response

    def set(self) -> None:
        self.response._stop("shutdown")


class _EventStream(EventSourceResponse):
    """An :class:`EventSourceResponse` served by one task per response, that always
    completes its HTTP response and ends a stalled reader's response.

    **One task.** sse-starlette runs each response as a task group of four tasks (the
    body, the ping, a shutdown-signal watcher and a disconnect listener): their
    coroutines, cancel scopes, closures and events were ~140 of the ~254 GC-tracked
    objects per connection that every full collection walks while all streams wait
    (with 1,000 subscribers, 310-330 ms of CPU per collection; docs/benchmarks.md, W5). On
    asyncio this response instead sends the body from the ASGI task itself, inside one
    cancel scope, and

    - listens for ``http.disconnect`` in one plain asyncio task awaiting ``receive()``;
      a disconnect cancels the scope, which ends the body's wait at once and frees its
      subscription;
    - sends the heartbeat from one timer per response (``loop.call_at``) when nothing
      was written for ``ping`` seconds, as a short-lived task (one send, then gone);
      the body's next write waits for it, so writes never overlap;
    - registers with sse-starlette's shutdown watcher (one per event loop, polling
      uvicorn's ``should_exit``), which cancels the scope on server shutdown.

    On another event loop (trio), for ``HEAD`` and on a WebSocket scope it is
    sse-starlette's own response.

    **Completion.** On server shutdown sse-starlette cancels the body mid-stream and
    returns without the final (empty) body message; uvicorn then logs "ASGI callable
    returned without completing response" and the client sees a truncated chunked body.
    Completing it here gives the client a clean end, after which ``EventSource``
    reconnects with its ``Last-Event-ID``.

    **Stalled readers.** A client that stops reading blocks every write once the socket
    buffers are full. With ``send_timeout`` set, a write that waits longer ends the
    response (the same timer checks the write in progress): the reader is sent (if it
    still can take it) a :func:`lagged_ending` and may resume; its subscription and
    buffers are freed either way.
    """

    def __init__(
        self, body: _Body, *, ping: float, send_timeout: float | None, progress: _Progress
    ) -> None:
        super().__init__(
            body.iterate(),
            ping=ping,
            ping_message_factory=_heartbeat,
            sep="\n",
            send_timeout=send_timeout,
        )
        self.source = body
        self.progress = progress
        self._loop: asyncio.AbstractEventLoop | None = None
        #: the loop's time when the write in progress began (``None``: none is)
        self._sending_since: float | None = None
        #: the loop's time when the last write (body or heartbeat) began
        self._last_send = 0.0
        #: why the response was cut short: "disconnect", "shutdown" or "stall"
        self._ended_by: str | None = None
        self._completing = False  # the final body message is being sent
        self._scope: anyio.CancelScope | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._ping_task: asyncio.Task[None] | None = None
        self._send: Send | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio_loop()
        if (
            loop is None
            or _shutdown_state is None
            or scope["type"] != "http"
            or scope["method"].upper() == "HEAD"
        ):
            await self._respond(scope, receive, send)
            return
        # Body chunks go straight to the server's send (what the app itself was given,
        # :data:`SERVER_SEND`): the middleware's send wrappers only look at (Starlette's
        # error handlers) or change (CORS) the start message, which goes through them.
        server_send = scope.get(SERVER_SEND, send)
        self._loop, self._send = loop, server_send
        self._scope = anyio.CancelScope()
        listener = loop.create_task(self._await_disconnect(receive))
        on_shutdown = _OnShutdown(self)
        _start_shutdown_watcher()
        registry = _shutdown_state().events
        registry.add(on_shutdown)  # type: ignore[arg-type]  # duck-typed: has set()
        self._last_send = loop.time()
        self._schedule()
        start: Message = {
            "type": "http.response.start",
            "status": self.status_code,
            "headers": self.raw_headers,
        }
        started = completed = False
        try:
            if AppStatus.should_exit:
                self._stop("shutdown")
            with self._scope:
                self._send = send
                await self._write(start)
                self._send = server_send
                started = True
                await self._pump()
                self._completing = True
                await self._write({"type": "http.response.body", "body": b"", "more_body": False})
                completed = True
        finally:
            # (the body iterator sse-starlette was given is never started on this path:
            # _pump sends the body, so there is nothing to close)
            if self._timer is not None:
                self._timer.cancel()
            listener.cancel()
            if self._ping_task is not None:
                self._ping_task.cancel()
            registry.discard(on_shutdown)
            self._scope = None
        if self._ended_by == "stall":
            await self._lagged(send)
        elif self._ended_by == "shutdown" and not completed:
            with anyio.move_on_after(self.send_timeout or 1.0):  # a cut body gets its end
                if not started:
                    await send(start)
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        if self.background is not None:
            await self.background()

    async def _pump(self) -> None:
        """Send the body (:meth:`_Body.iterate`'s chunks) from this task: one ASGI send
        per chunk and, per burst, :meth:`Subscription.next_batch_nowait` after awaiting
        its :meth:`Subscription.waiter` (or :meth:`Subscription.next_batch` where there
        is none), and nothing else made per burst. A subscriber waiting for the next
        burst holds only that wait (no async generator step, no coroutine, no batch of
        the last burst): at 1,000 subscribers what they hold across the wait is what
        young collections walk and middle ones promote (docs/benchmarks.md, W5)."""
        body, progress, loop = self.source, self.progress, self._loop
        send = self._send
        assert loop is not None and send is not None
        events, pieces = body.events, body.pieces
        batch, body.first = body.first, []
        try:
            if not batch:  # resumed at the live head (see _Body.iterate)
                await self._write(
                    {"type": "http.response.body", "body": body.take_head(), "more_body": True}
                )
                batch = await events.next_batch()
            while batch:
                for chunk, last_seq in pieces(batch):
                    # self._write inlined: one coroutine less per subscriber per burst
                    if self._ping_task is not None:
                        await self._ping_task
                    self._sending_since = self._last_send = loop.time()
                    try:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    finally:
                        self._sending_since = None
                    progress.sent_seq = last_seq
                del batch  # hold no burst across the wait
                # Subscription.next_batch inlined where this process's log offers a
                # waiter: across the wait the subscriber then holds its task and that
                # waiter (a future on asyncio), no coroutine of the subscription's or
                # the log's; that is what the collector walks and promotes per burst
                while (ready := events.next_batch_nowait()) is None:
                    waiter = events.waiter()
                    if waiter is None:
                        ready = await events.next_batch()  # [] after stream.end
                        break
                    await waiter
                    del waiter
                batch = ready
                del ready
        except (SubscriberLagged, EventLogUnavailable) as exc:
            await self._write(
                {"type": "http.response.body", "body": body.ending(exc), "more_body": True}
            )

    def _stop(self, reason: str) -> None:
        """End the response (its body's wait or write) for ``reason``: "disconnect",
        "shutdown" (not once the final message is being sent) or "stall"."""
        if self._scope is None or self._ended_by is not None:
            return
        if self._completing and reason != "stall":
            return
        self._ended_by = reason
        self.active = False
        self._scope.cancel()

    async def _await_disconnect(self, receive: Receive) -> None:
        """The disconnect listener: ``receive()`` until ``http.disconnect``."""
        while (await receive())["type"] != "http.disconnect":
            pass
        self._stop("disconnect")

    async def _write(self, message: Message) -> None:
        """One ASGI send, after the heartbeat in flight if there is one; the timer
        watches how long it waits."""
        ping = self._ping_task
        if ping is not None:
            await ping
        send, loop = self._send, self._loop
        assert send is not None and loop is not None
        self._sending_since = self._last_send = loop.time()
        try:
            await send(message)
        finally:
            self._sending_since = None

    def _schedule(self) -> None:
        """Set the timer for the next look: when the write in progress would reach
        ``send_timeout``, or when a heartbeat would be due."""
        loop, ping, timeout = self._loop, self.ping_interval, self.send_timeout
        assert loop is not None
        since = self._sending_since
        if since is not None:
            at = since + (timeout if timeout is not None else ping)
        else:
            # idle: the next heartbeat, and a look at a write begun before then (so a
            # stalled write is ended within one to two send_timeouts)
            at = self._last_send + ping if ping > 0 else math.inf
            if timeout is not None:
                at = min(at, loop.time() + timeout)
            if at == math.inf:
                self._timer = None
                return
        self._timer = loop.call_at(at, self._tick)

    def _tick(self) -> None:
        """The timer: end a write that waited ``send_timeout`` seconds; send a
        heartbeat if nothing was written for ``ping`` seconds; look again later."""
        loop, ping, timeout = self._loop, self.ping_interval, self.send_timeout
        if loop is None or self._scope is None:
            return
        now, since = loop.time(), self._sending_since
        if since is not None:
            if timeout is not None and now - since >= timeout:
                self._stop("stall")
                return
        elif (
            ping > 0
            and now - self._last_send >= ping
            and self._ping_task is None
            and not self._completing
        ):
            self._sending_since = self._last_send = now
            self._ping_task = loop.create_task(self._heartbeat())
        self._schedule()

    async def _heartbeat(self) -> None:
        """Send one heartbeat comment (sse-starlette's encoding of the response's
        ``ping_message_factory``); the timer set :attr:`_sending_since`."""
        send = self._send
        assert send is not None
        factory = self.ping_message_factory or _heartbeat
        try:
            await send(
                {
                    "type": "http.response.body",
                    "body": ensure_bytes(factory(), self.sep),
                    "more_body": True,
                }
            )
        finally:
            self._sending_since = None
            self._ping_task = None

    async def _lagged(self, send: Send) -> None:
        """End a stalled reader's response with a :func:`lagged_ending` (if it can still
        take it within ``send_timeout``)."""
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

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        """sse-starlette's response (trio, ``HEAD``, WebSocket), completed on shutdown
        and ended with a :func:`lagged_ending` when a write times out."""
        started = completed = False

        async def tracking_send(message: Message) -> None:
            nonlocal started, completed
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                completed = True
            await send(message)

        try:
            await super().__call__(scope, receive, tracking_send)
        except SendTimeoutError:
            await self._lagged(send)
            return
        if started and not completed:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


#: seconds the SSE endpoint waits for the first events of a stream another process runs
#: before it sends the headers and lets the body wait
FIRST_WAIT = 1.0
#: seconds between looks at whether a subscription that is still reading the store
#: after :data:`FIRST_WAIT` knows the stream is live
FIRST_POLL = 0.05


async def first_batch(events: Subscription) -> tuple[list[Event], bool]:
    """``(batch, True)``: the subscription's first batch (``[]``: the stream is over and
    nothing follows the resume point); ``(batch, False)`` once it has waited
    :data:`FIRST_WAIT` seconds and knows the stream exists and runs elsewhere
    (:attr:`Subscription.following_live`), so the caller sends its headers and goes on
    with :meth:`Subscription.next_batch`.

    A store slower than :data:`FIRST_WAIT` does not cut the wait short: until the
    subscription knows the stream is live, a 404 or a 204 may still be the answer
    (before, such a request got headers and an empty body). The fetch runs in its own
    task, so the store's read is never cancelled and restarted.

    :raises StreamNotFound: as :meth:`Subscription.next_batch`.
    :raises SubscriberLagged: as :meth:`Subscription.next_batch`.
    """
    got: list[list[Event]] = []
    failed: list[BaseException] = []
    done = anyio.Event()

    async def fetch() -> None:
        try:
            got.append(await events.next_batch())
        except Exception as exc:  # re-raised below, outside the task group
            failed.append(exc)
        finally:
            done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(fetch)
        with anyio.move_on_after(FIRST_WAIT):
            await done.wait()
        while not done.is_set() and not events.following_live:
            with anyio.move_on_after(FIRST_POLL):
                await done.wait()
        if not done.is_set():
            tg.cancel_scope.cancel()  # next_batch is cancellation-safe: the body goes on
    if failed:
        raise failed[0]
    return (got[0], True) if got else ([], False)


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
        if newest is not None and after_seq < newest:
            # Events after the resume point exist here, so this does not wait: a lagged
            # subscriber (410) is answered before the headers.
            first = await events.next_batch()
        elif newest is None:
            # Not run by this process: replayed from the store or followed through a
            # shared event log. An unknown stream (404), a lagged subscriber (410) and
            # a finished stream with nothing left (204) are answered before the headers
            # as soon as that is known; a stream live on another node with nothing yet
            # after the resume point (a reconnect at its live head) is not held up to
            # its next event, which may be a long tool call away: after FIRST_WAIT
            # seconds the headers go out and the body waits (heartbeats flow).
            first, complete = await first_batch(events)
            if complete and not first:
                return Response(status_code=204)
        return self._response(stream_id, first, events, after_seq)

    def follow(self, stream_id: str) -> Response:
        """A stream from its first event, e.g. one this request just started."""
        return self._response(stream_id, [], self.runtime.events(stream_id, 0), 0)

    def _response(
        self, stream_id: str, first: list[Event], events: Subscription, after_seq: int
    ) -> _EventStream:
        progress = _Progress(after_seq)
        body = _Body(
            stream_id, first, events, self._encoder, progress, b"retry: %d\n\n" % self.retry_ms
        )
        return _EventStream(
            body, ping=self.heartbeat, send_timeout=self.send_timeout, progress=progress
        )

    def _newest_live_seq(self, stream_id: str) -> int | None:
        """The newest ``seq`` of a live stream, or ``None`` if it is not live here."""
        if not self.runtime.is_live(stream_id):
            return None
        try:
            return self.runtime.broker.get(stream_id).last_seq
        except StreamNotFound:  # pragma: no cover - a live stream always has its log
            return None


class _Body:
    """The body of one SSE response: the ``retry:`` hint with the first batch, then one
    chunk per batch until ``stream.end``. A long batch (a replay) goes out in pieces
    (:func:`chunk_pieces`: at most :data:`CHUNK_EVENTS` events and :data:`CHUNK_BYTES`
    bytes), each sent (and flow-controlled) before the next is encoded. A subscriber
    that lags or loses the shared event log gets an ending (:func:`lagged_ending`,
    :func:`unavailable_ending`) resuming after the last event sent.

    On asyncio :meth:`_EventStream._pump` sends it from the response's task; elsewhere
    sse-starlette iterates :meth:`iterate`.
    """

    __slots__ = ("encoder", "events", "first", "head", "progress", "stream_id")

    def __init__(
        self,
        stream_id: str,
        first: list[Event],
        events: Subscription,
        encoder: BatchEncoder,
        progress: _Progress,
        head: bytes,
    ) -> None:
        self.stream_id = stream_id
        #: events already read (before the headers), sent first
        self.first = first
        self.events = events
        #: the endpoint's, shared by its responses
        self.encoder = encoder
        self.progress = progress
        #: the ``retry:`` hint, sent with the first chunk
        self.head = head

    def ending(self, exc: SubscriberLagged | EventLogUnavailable) -> bytes:
        """The message that ends the body when the subscription raised ``exc``: the
        client reconnects with its ``Last-Event-ID``, and what the store still holds is
        replayed then (else it is answered 410)."""
        logger.warning("SSE subscriber of %s: %s", self.stream_id, exc)
        if isinstance(exc, SubscriberLagged):
            return lagged_ending(self.progress.sent_seq, str(exc))
        return unavailable_ending(self.progress.sent_seq, str(exc))

    def take_head(self) -> bytes:
        """The ``retry:`` hint, once (``b""`` after the first call)."""
        head, self.head = self.head, b""
        return head

    def pieces(self, batch: Sequence[Event]) -> Iterable[tuple[bytes, int]]:
        """``batch`` as the chunks to send, ``(chunk, seq of its last event)`` each
        (:meth:`BatchEncoder.chunks`), the ``retry:`` hint before the first chunk of
        the response."""
        chunks = self.encoder.chunks(batch, shared=self.events.from_log)
        if not self.head:
            return chunks
        return _after(self.take_head(), chunks)

    async def iterate(self) -> AsyncIterator[bytes]:
        """The body as an async iterator of chunks (sse-starlette's own response)."""
        events, progress = self.events, self.progress
        batch, self.first = self.first, []
        try:
            if not batch:
                # Resumed at the live head: nothing to replay, so send the hint at once
                # and wait for the stream to go on (a client that dropped right after
                # the newest event must be followed, not cut off).
                yield self.take_head()
                batch = await events.next_batch()
            while batch:
                for chunk, last_seq in self.pieces(batch):
                    yield chunk
                    progress.sent_seq = last_seq  # the send of that chunk returned
                batch = await events.next_batch()  # [] after stream.end
        except (SubscriberLagged, EventLogUnavailable) as exc:
            yield self.ending(exc)


def _after(head: bytes, chunks: Iterable[tuple[bytes, int]]) -> Iterator[tuple[bytes, int]]:
    """``chunks`` with ``head`` put before the first chunk's bytes."""
    for chunk, last_seq in chunks:
        yield head + chunk, last_seq
        head = b""
