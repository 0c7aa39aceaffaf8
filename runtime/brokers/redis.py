"""The event log on Redis Streams: any process follows, resumes and cancels any stream.

One Redis stream per runtime stream, key ``<prefix>:<stream_id>``, one entry per event
with the id ``<seq>-0`` (so a ``Last-Event-ID`` is a stream id) and the event's JSON in
the field ``e``; a hash ``<prefix>:<stream_id>:meta`` holds its session. Each stream is
capped at about ``max_events`` entries (``XADD … MAXLEN ~``) and both keys expire
``retention`` seconds after ``stream.end`` (``PEXPIRE``; ``live_ttl`` while it runs, so
the keys of a process that died go too).

The process that opened a stream (the lease owner, the only one that allocates ``seq``)
keeps its recent events in memory, so its own subscribers never wait for Redis, and
publishing only appends to a buffer: one background task sends the buffers of every
stream in one script call (``EVALSHA``) per round trip (atomic: a reader elsewhere gets
a round's entries in one read). If Redis cannot be reached, the turn goes on
(its checkpoints go to the store); each stream's buffer keeps its newest
``buffer_events`` events (older ones are dropped from the buffer only: a checkpoint has
them, or will), the broker reports :attr:`RedisEventLog.degraded`, and the buffer is
sent when Redis is back. Readers in other processes see the hole as
:class:`~runtime.SubscriberLagged` and take those events from the store.

Other processes follow with ``XRANGE`` from their resume point, then ``XREAD BLOCK``
from the newest entry they hold. An entry's id is its ``seq``, so reading by id cannot
lose or repeat an event published while a reader joins. Readers of one stream in one
process share one view of it (also when they attach at the same moment), so one
``XREAD BLOCK`` per batch, one decode per event; a reader that must notice a quiet stream
(:meth:`StreamLog.read_within`) uses that read's timeout, not a timer of its own.

Cancel requests travel on the pub/sub channel ``<prefix>:cancel:<node_id>`` of the
process that owns the stream.

Requires the ``redis`` extra (redis-py's asyncio client).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import anyio
import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._events import STREAM_END, Event
from .._exceptions import EventLogUnavailable, StreamNotFound, SubscriberLagged
from .._timer import Latch, asyncio_loop
from .abc import Broker, StreamLog

__all__ = ["RedisEventLog"]

logger = logging.getLogger("runtime.brokers.redis")

#: the errors that mean "Redis cannot be reached" (as opposed to a refused command)
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
#: events sent per round trip at most
_ROUND_EVENTS = 2048
#: entries fetched per XRANGE / XREAD
_READ_COUNT = 4096

#: One send round in one call. KEYS: per stream its key and its meta hash's key. ARGV:
#: MAXLEN, then per stream its session id, the keys' TTL in milliseconds, the number of
#: events n, and n pairs (entry id, event JSON). Returns the errors Redis raised for
#: any command, except an entry id that is there already (a retried round whose first
#: try ran). ``redis.pcall``: one refused command does not stop the rest, as in a
#: ``MULTI``/``EXEC`` (and neither rolls back).
_SEND_SCRIPT = """
local maxlen = ARGV[1]
local a = 2
local refused = {}
local function check(reply)
  if type(reply) == 'table' and reply.err
      and not string.find(reply.err, 'equal or smaller', 1, true) then
    refused[#refused + 1] = reply.err
  end
end
for k = 1, #KEYS, 2 do
  local key, meta = KEYS[k], KEYS[k + 1]
  local session, ttl, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  for _ = 1, n do
    check(redis.pcall('XADD', key, 'MAXLEN', '~', maxlen, ARGV[a], 'e', ARGV[a + 1]))
    a = a + 2
  end
  check(redis.pcall('HSET', meta, 'session', session))
  check(redis.pcall('PEXPIRE', key, ttl))
  check(redis.pcall('PEXPIRE', meta, ttl))
end
return refused
"""


class _Window:
    """Events ``base+1 .. last`` of one stream held in this process, with a wake-up for
    readers waiting at the head."""

    __slots__ = ("base", "closed", "events", "wakeup")

    def __init__(self, base: int = 0) -> None:
        self.base = base  # seq of the event before events[0]
        self.events: list[Event] = []
        self.closed = False
        self.wakeup: Latch | None = None  # a future per waiting reader, no coroutine

    @property
    def last(self) -> int:
        return self.base + len(self.events)

    def add(self, event: Event) -> None:
        self.events.append(event)
        if event.type == STREAM_END:
            self.closed = True

    def wake(self) -> int:
        """Wake the readers waiting at the head; returns how many waited. Several are
        woken from a callback queued behind the caller, so that a publisher mid-run (or
        the owner's sender) goes on first and each reader then takes the whole run in
        one batch, as the in-memory log does."""
        wakeup = self.wakeup
        if wakeup is None:
            return 0
        self.wakeup = None
        waiting = wakeup.waiters()
        loop = asyncio_loop() if waiting > 1 else None
        if loop is None:
            wakeup.set()
        else:
            loop.call_soon(wakeup.set)
        return waiting

    def waiter(self) -> Awaitable[None]:
        """A wait for the next :meth:`wake` (a future of its own on asyncio)."""
        if self.wakeup is None:
            self.wakeup = Latch()
        return self.wakeup.wait()

    def trim(self, max_events: int) -> None:
        """Keep at most ``max_events`` (drop in chunks: amortised O(1) per event)."""
        extra = len(self.events) - max_events
        if extra > 0:
            drop = max(extra, min(max_events // 8, len(self.events)))
            del self.events[:drop]
            self.base += drop

    def slice(self, after_seq: int, up_to_seq: int) -> list[Event]:
        start = max(after_seq, self.base) - self.base
        stop = min(up_to_seq, self.last) - self.base
        return self.events[start:stop] if start < stop else []


def _ready() -> Awaitable[None]:
    """A wait that is over already."""
    ready = Latch()
    ready.set()
    return ready.wait()


def _check_json(event: Event, stream_id: str) -> None:
    try:
        event.json()
    except TypeError as exc:
        raise TypeError(
            f"invalid data for {event.type!r} event {event.seq} of stream {stream_id!r}: "
            f"not JSON-ready ({exc})"
        ) from None


class _OwnedLog(StreamLog):
    """The log of a stream this process runs: events in memory, sent to Redis by the
    broker's sender task."""

    __slots__ = (
        "_broker",
        "_outbox",
        "_window",
        "closed",
        "dropped",
        "finished_at",
        "sent_seq",
        "session_id",
        "stream_id",
    )

    def __init__(self, broker: RedisEventLog, stream_id: str, session_id: str) -> None:
        self.stream_id = stream_id
        self.session_id = session_id
        self.closed = False
        self.finished_at: float | None = None
        self._broker = broker
        self._window = _Window()
        # unsent events: unbounded while Redis answers (a producer faster than the
        # sender's round trips must not make holes), capped at buffer_events while not
        self._outbox: deque[Event] = deque()
        self.sent_seq = 0  # newest seq Redis has
        self.dropped = 0  # events dropped from the buffer while Redis was unreachable

    @property
    def last_seq(self) -> int:
        return self._window.last

    @property
    def first_retained_seq(self) -> int:
        return self._window.base + 1

    def publish(self, type: str, data: dict[str, Any]) -> Event:
        if self.closed:
            raise RuntimeError(f"stream {self.stream_id!r} has ended; cannot publish {type!r}")
        event = Event(self.last_seq + 1, self.stream_id, self.session_id, type, data, time.time())
        self.append(event)
        return event

    def append(self, event: Event) -> None:
        if event.seq != self.last_seq + 1:
            raise ValueError(
                f"event seq {event.seq} does not follow {self.last_seq} "
                f"in stream {self.stream_id!r}"
            )
        _check_json(event, self.stream_id)
        window = self._window
        window.add(event)
        window.trim(self._broker.max_events)
        outbox = self._outbox
        broker = self._broker
        if broker._degraded:  # Redis unreachable: keep the newest buffer_events only
            while len(outbox) >= broker.buffer_events:
                outbox.popleft()
                self.dropped += 1
        outbox.append(event)
        if window.closed:
            self.closed = True
            self.finished_at = time.monotonic()
        self._broker._dirty(self)
        window.wake()

    def read_nowait(self, after_seq: int) -> list[Event]:
        window = self._window
        if after_seq < window.base:
            raise SubscriberLagged(self.stream_id, after_seq + 1, window.base + 1)
        return window.slice(after_seq, window.last)

    async def read(self, after_seq: int) -> list[Event]:
        # the wait, in this coroutine: a reader waiting for the next burst holds one
        # future (what 1,000 subscribers hold across a wait is what the collector walks
        # and promotes at every burst, docs/benchmarks.md, W5)
        window = self._window
        if window.last <= after_seq and not window.closed:
            await window.waiter()
        return self.read_nowait(after_seq)

    def waiter(self, after_seq: int) -> Awaitable[None]:
        """The wait of :meth:`read` alone: on asyncio a future of its own, done at the
        next publish (at once if an event after ``after_seq`` is here, the reader fell
        behind the window, or the log is closed); then :meth:`read_nowait`."""
        window = self._window
        if after_seq < window.last or window.closed:
            return _ready()
        return window.waiter()

    def events_between(self, after_seq: int, up_to_seq: int) -> list[Event]:
        return self._window.slice(after_seq, up_to_seq)

    def abandon(self) -> None:
        """Closed for this process's readers without ``stream.end`` (see
        :meth:`StreamLog.abandon`); what was published is still sent to Redis, where
        other nodes' readers notice the writer gone through the store."""
        self.closed = True
        self._window.closed = True
        self._window.wake()

    async def flush(self) -> None:
        """Wait until Redis has every published event, or return as soon as Redis is
        unreachable (the buffer is sent in the background once it is back)."""
        broker = self._broker
        while self._outbox and not broker.degraded:  # emptied once Redis confirmed them
            await broker._sent.wait()


class _SentSignal:
    """Wakes the flushers after each round trip (asyncio's event: redis-py's asyncio
    client runs on asyncio only, and this one may be made before the loop runs)."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def notify(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self) -> None:
        if self._event is None:
            self._event = asyncio.Event()
        await self._event.wait()


class _RemoteLog(StreamLog):
    """A read-only view of a stream another process runs: events are read from Redis
    into a window shared by this process's readers.

    Two kinds of reader share the view's one ``XREAD BLOCK`` at the head: coroutines in
    :meth:`read` / :meth:`read_within`, and :meth:`waiter` futures, for which the view
    runs a reader task (the follower) while any wait. Every head read, whoever sent it,
    wakes the waiters when it ends: with new events, or with none (the block timed out:
    a quiet stream, perhaps a dead owner) or with an error. After one of the latter two
    the view is *stalled* and :meth:`waiter` returns ``None`` until events come again,
    so its readers go back to :meth:`read_within`, which notices the dead owner (its
    caller asks the store) or raises the error.
    """

    __slots__ = (
        "_broker",
        "_fetching",
        "_follower",
        "_key",
        "_stalled",
        "_window",
        "session_id",
        "stream_id",
    )

    remote = True

    def __init__(self, broker: RedisEventLog, stream_id: str, session_id: str) -> None:
        self.stream_id = stream_id
        self.session_id = session_id
        self._broker = broker
        self._key = broker._key(stream_id)
        self._window: _Window | None = None  # set by the first read
        # a read in flight, which the other readers of this view wait for (a Latch: each
        # waiter holds one future, not a coroutine chain, per burst)
        self._fetching: Latch | None = None
        self._follower: asyncio.Task[None] | None = None  # reads the head for the waiters
        self._stalled = False  # the last head read timed out or failed

    @property
    def closed(self) -> bool:  # type: ignore[override]
        return self._window is not None and self._window.closed

    @property
    def last_seq(self) -> int:
        return 0 if self._window is None else self._window.last

    @property
    def first_retained_seq(self) -> int:
        return 1 if self._window is None else self._window.base + 1

    def publish(self, type: str, data: dict[str, Any]) -> Event:
        raise RuntimeError(
            f"stream {self.stream_id!r} is run by another process; only it publishes events"
        )

    def append(self, event: Event) -> None:
        self.publish(event.type, event.data)

    def read_nowait(self, after_seq: int) -> list[Event]:
        window = self._window
        if window is None:
            return []
        if after_seq < window.base:
            raise SubscriberLagged(self.stream_id, after_seq + 1, window.base + 1)
        return window.slice(after_seq, window.last)

    def events_between(self, after_seq: int, up_to_seq: int) -> list[Event]:
        return [] if self._window is None else self._window.slice(after_seq, up_to_seq)

    def waiter(self, after_seq: int) -> Awaitable[None] | None:
        """A future of its own (on asyncio), done once this process's window holds an
        event after ``after_seq`` (at once if it does), the stream ended, or the view's
        next head read brought nothing or failed; then :meth:`read_nowait`. ``None``
        (use :meth:`read_within`) before the view's first read, for a reader behind the
        window, on another event loop, and while the view is stalled (see the class)."""
        window = self._window
        if window is None or after_seq < window.base or self._stalled:
            return None
        if after_seq < window.last or window.closed:
            return _ready()
        # A head read in flight wakes this wait when it ends; else the follower reads.
        # (Either one runs on asyncio: the loop is looked up only to start the follower,
        # once per burst, not once per waiting subscriber.)
        if self._follower is None and self._fetching is None:
            loop = asyncio_loop()
            if loop is None:  # redis-py's client runs on asyncio only
                return None
            self._follower = loop.create_task(self._follow())
        return window.waiter()

    async def _follow(self) -> None:
        """The follower: head reads for the waiters while they wait; ends once a read
        woke nobody, brought nothing, failed, or the stream ended.

        Each read is sent after the fan-out of the previous one's batch (the woken
        waiters' steps), not before it: sending wakes Redis, and on a busy machine the
        kernel may run Redis at once in this process's place, delaying the fan-out
        (py-spy of node B in W5: 3.6 % of its samples in that send, as much as ~60 of
        its 500 SSE writes). A burst published meanwhile waits in Redis, which answers
        the next read at once."""
        woke = 0  # readers the last read woke: they will most likely wait again
        try:
            while True:
                window = self._window
                if window is None or window.closed or self._stalled:
                    return
                fetching = self._fetching
                if fetching is not None:  # a reader's head read: it wakes the waiters
                    await fetching.wait()
                    woke = 0
                    continue
                if not woke and window.wakeup is None:
                    return  # nobody waits
                try:
                    woke = await self._read_head(window, None)
                except (EventLogUnavailable, RedisError):
                    return  # the waiters were woken; they meet the error in read_within
                if woke > 1:
                    # two loop iterations: the wake-up callback (see _Window.wake),
                    # then the woken waiters' steps; the next read goes out after them
                    await asyncio.sleep(0)
                    await asyncio.sleep(0)
        finally:
            self._follower = None

    async def read(self, after_seq: int) -> list[Event]:
        """Events after ``after_seq`` from this process's window, else from Redis.

        :raises SubscriberLagged: if Redis no longer has (or never got) the event after
            ``after_seq``: read it from the store.
        :raises EventLogUnavailable: if Redis cannot be reached.
        """
        events = await self._read(after_seq, None)
        assert events is not None  # no deadline: waits for events or the end
        return events

    def read_within(
        self, after_seq: int, seconds: float
    ) -> Coroutine[Any, Any, list[Event] | None]:
        """:meth:`read`, or ``None`` once no event came for ``seconds`` (checked after
        each blocking read, which then waits at most ``seconds``: so between
        ``seconds`` and twice that). No timer per reader: the readers waiting at the
        head share one ``XREAD BLOCK`` and its timeout. (The read's own coroutine is
        returned: no coroutine of this method's per read.)

        :raises SubscriberLagged: as :meth:`read`.
        :raises EventLogUnavailable: as :meth:`read`.
        """
        return self._read(after_seq, seconds)

    async def _read(self, after_seq: int, seconds: float | None) -> list[Event] | None:
        deadline = None if seconds is None else time.monotonic() + seconds
        while True:
            window = self._window
            if window is None and self._fetching is not None:
                await self._fetching.wait()  # the view's first read is in flight: share it
                continue
            if window is None or after_seq < window.base:
                events = await self._read_range(after_seq)
                if events:
                    return events
                if window is not None:  # the entries before the window are gone
                    raise SubscriberLagged(self.stream_id, after_seq + 1, window.base + 1)
                continue  # nothing after the resume point yet: wait at the head
            if after_seq < window.last:
                return window.slice(after_seq, window.last)
            if window.closed:
                return []
            if deadline is not None and time.monotonic() >= deadline:
                return None
            fetching = self._fetching
            if fetching is not None:  # another reader is at the head: take its result
                await fetching.wait()  # (here, not in _read_head: a coroutine less)
                continue
            await self._read_head(window, seconds)

    async def _read_range(self, after_seq: int) -> list[Event]:
        """Entries after ``after_seq`` by ``XRANGE``; the first such read starts the
        window (and the readers arriving meanwhile wait for it)."""
        done = None
        if self._window is None:
            done = self._fetching = Latch()
        try:
            self._broker._reads += 1
            with self._broker._errors(self.stream_id):
                entries = await self._broker._client.xrange(
                    self._key, min=f"{after_seq + 1}-0", count=_READ_COUNT
                )
            events = _contiguous(self.stream_id, after_seq, entries)
            if self._window is None:
                window = self._window = _Window(after_seq)
                for event in events:
                    window.add(event)
            return events
        finally:
            if done is not None:
                self._fetching = None
                done.set()

    async def _read_head(self, window: _Window, seconds: float | None) -> int:
        """Wait for entries after the window's newest, one blocking read per process
        (blocking at most ``block_ms``, and at most ``seconds`` if given); the caller
        made sure no other reader is at it. Wakes the window's waiters in any case;
        returns how many waited if entries came, else 0 (and the view is stalled)."""
        done = self._fetching = Latch()
        got = False
        try:
            last = window.last
            block = self._broker.block_ms
            if seconds is not None:
                block = max(1, min(block, int(seconds * 1000)))
            self._broker._reads += 1
            with self._broker._errors(self.stream_id):
                reply = await self._broker._client.xread(
                    {self._key: f"{last}-0"}, count=_READ_COUNT, block=block
                )
            entries = reply[0][1] if reply else []
            if not entries:
                return 0
            first = _seq_of(entries[0][0])
            if first != last + 1:  # a hole (dropped while Redis was down, or capped)
                window.wake()  # its waiters meet the hole in read_nowait, then read
                self._window = _Window(first - 1)
                window = self._window
            for event in _contiguous(self.stream_id, window.last, entries):
                window.add(event)
            window.trim(self._broker.max_events)
            got = True
            self._stalled = False
            return window.wake()
        finally:
            self._fetching = None
            done.set()
            if not got:  # timed out or failed: the waiters go back to read_within
                self._stalled = True
                window.wake()


def _seq_of(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.partition("-")[0])


def _contiguous(stream_id: str, after_seq: int, entries: list[Any]) -> list[Event]:
    """The events of ``entries`` (``(id, {b"e": json})`` pairs), which must go on from
    ``after_seq`` without a hole.

    :raises SubscriberLagged: if the first entry is not ``after_seq + 1``.
    """
    events: list[Event] = []
    expected = after_seq + 1
    for entry_id, fields in entries:
        seq = _seq_of(entry_id)
        if seq != expected:
            if events:
                break  # hand out what goes on; the next read meets the hole
            raise SubscriberLagged(stream_id, expected, seq)
        events.append(Event.from_dict(orjson.loads(fields[b"e"])))
        expected += 1
    return events


class RedisEventLog(Broker):
    """The event logs of every process of a deployment, on one Redis server.

    ``Runtime(store=PostgresStore(dsn), broker=RedisEventLog("redis://host:6379/0"))``.
    Every process must use the same ``url`` and ``prefix``.

    :param url: a ``redis://`` or ``rediss://`` URL (redis-py's ``from_url``).
    :param prefix: the first part of every key and channel (several deployments may
        share one server with different prefixes).
    :param retention: seconds a finished stream stays readable, here and in Redis
        (``PEXPIRE`` after ``stream.end``; >= 0).
    :param max_events: events kept per stream, in this process and (approximately,
        ``MAXLEN ~``) in Redis (>= 1).
    :param buffer_events: events of one stream buffered while Redis is unreachable; the
        oldest are dropped beyond it (>= 1).
    :param live_ttl: seconds the keys of a running stream live after its last event, so
        that a process that died leaves nothing forever (default a day).
    :param block_ms: milliseconds one ``XREAD BLOCK`` waits before reading again.
    :param close_timeout: seconds :meth:`aclose` waits for buffered events to be sent.
    :raises ValueError: for a bad parameter, naming it.
    """

    shared = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "runtime",
        retention: float = 300.0,
        max_events: int = 100_000,
        buffer_events: int = 10_000,
        live_ttl: float = 86_400.0,
        block_ms: int = 1000,
        close_timeout: float = 5.0,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"invalid url {url!r}: must be a redis://, rediss:// or unix:// URL")
        if not isinstance(prefix, str) or not prefix or any(c.isspace() for c in prefix):
            raise ValueError(f"invalid prefix {prefix!r}: must be a non-empty word")
        if not retention >= 0:
            raise ValueError(f"invalid retention {retention!r}: must be >= 0 seconds")
        for name, value in (
            ("max_events", max_events),
            ("buffer_events", buffer_events),
            ("block_ms", block_ms),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"invalid {name} {value!r}: must be an integer >= 1")
        if not live_ttl > 0:
            raise ValueError(f"invalid live_ttl {live_ttl!r}: must be > 0 seconds")
        self.url = url
        self.prefix = prefix
        self.retention = float(retention)
        self.max_events = max_events
        self.buffer_events = buffer_events
        self.live_ttl = float(live_ttl)
        self.block_ms = block_ms
        self.close_timeout = float(close_timeout)
        # from_url does no I/O: the first command connects
        # redis-py's reply types are unions of every RESP shape: typed as Any here, the
        # replies are checked where they are read
        self._client: Any = aioredis.Redis.from_url(url, socket_connect_timeout=2.0)
        self._send_script: Any = self._client.register_script(_SEND_SCRIPT)
        self._owned: dict[str, _OwnedLog] = {}
        self._finished: deque[_OwnedLog] = deque()
        self._remote: dict[str, _RemoteLog] = {}
        self._attaching: dict[str, anyio.Event] = {}  # an attach asking Redis, per stream
        self._reads = 0  # XRANGE / XREAD commands sent for the views of other processes' streams
        self._pending: dict[str, _OwnedLog] = {}  # logs with unsent events
        self._wake_sender: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None
        self._sent = _SentSignal()
        self._degraded = False
        self._closed = False

    # -- the Broker API -----------------------------------------------------------------

    def _key(self, stream_id: str) -> str:
        return f"{self.prefix}:{stream_id}"

    def open(self, stream_id: str, session_id: str, *, after_seq: int = 0) -> StreamLog:
        """Create the log of a new stream run by this process, or of a resumed one
        (see :meth:`Broker.open`): its entries go on after ``after_seq`` in the same
        Redis stream, whose earlier entries (the attempt that died) stay readable.

        :raises ValueError: if this process has a log with that id, or for a bad
            ``after_seq``.
        :raises RuntimeError: after :meth:`aclose`.
        """
        if self._closed:
            raise RuntimeError("the RedisEventLog is closed")
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
            raise ValueError(f"invalid after_seq {after_seq!r}: must be an integer >= 0")
        self.expire()
        if stream_id in self._owned:
            raise ValueError(f"stream {stream_id!r} already exists")
        self._remote.pop(stream_id, None)  # a view of the dead attempt, if any
        log = _OwnedLog(self, stream_id, session_id)
        log._window.base = log.sent_seq = after_seq
        self._owned[stream_id] = log
        return log

    def get(self, stream_id: str) -> StreamLog:
        """The log of a stream this process runs or ran within its retention.

        :raises StreamNotFound: otherwise (:meth:`attach` also finds other processes'
            streams).
        """
        log = self._owned.get(stream_id)
        if log is None or self._expired(log, time.monotonic()):
            raise StreamNotFound(f"no live or retained stream {stream_id!r} in this process")
        return log

    async def attach(self, stream_id: str) -> StreamLog:
        """This process's log of the stream, else a view of it in Redis.

        :raises StreamNotFound: if Redis holds no such stream (unknown, or expired).
        :raises EventLogUnavailable: if Redis cannot be reached.
        """
        with contextlib.suppress(StreamNotFound):
            return self.get(stream_id)
        # One view per stream per process, however many subscribers attach at once: the
        # first asks Redis, the others wait for its view (if it fails, they ask again).
        while (attaching := self._attaching.get(stream_id)) is not None:
            await attaching.wait()
        remote = self._remote.get(stream_id)
        if remote is not None and not remote.closed:  # an ended one: is it still retained?
            return remote
        done = self._attaching[stream_id] = anyio.Event()
        try:
            with self._errors(stream_id):
                session = await self._client.hget(self._key(stream_id) + ":meta", "session")
            if session is None:
                raise StreamNotFound(f"no live or retained stream {stream_id!r}")
            remote = _RemoteLog(self, stream_id, session.decode())
            if len(self._remote) >= 1_000:  # forget the views of ended streams
                self._remote = {k: v for k, v in self._remote.items() if not v.closed}
            self._remote[stream_id] = remote
            return remote
        finally:
            del self._attaching[stream_id]
            done.set()

    def drop(self, stream_id: str) -> None:
        """Forget a stream whose turn never started, here and (in the background) in Redis."""
        log = self._owned.pop(stream_id, None)
        self._remote.pop(stream_id, None)
        if log is not None:
            self._pending.pop(stream_id, None)
            log._outbox.clear()
            with contextlib.suppress(RuntimeError):  # no running loop: nothing was sent
                asyncio.get_running_loop().create_task(self._delete(stream_id))

    async def _delete(self, stream_id: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self._client.delete(self._key(stream_id), self._key(stream_id) + ":meta")

    def __len__(self) -> int:
        return len(self._owned) + len(self._remote)

    def expire(self) -> int:
        """Forget this process's finished logs older than the retention; returns how many."""
        now = time.monotonic()
        n = 0
        while self._finished and self._expired(self._finished[0], now):
            log = self._finished.popleft()
            if self._owned.get(log.stream_id) is log:
                del self._owned[log.stream_id]
                n += 1
        return n

    def _expired(self, log: _OwnedLog, now: float) -> bool:
        return log.finished_at is not None and now - log.finished_at > self.retention

    @property
    def degraded(self) -> bool:
        """True while Redis cannot be reached: events wait in bounded buffers."""
        return self._degraded

    def statistics(self) -> dict[str, int | bool]:
        """``{owned, remote, remote_reads, pending_events, dropped_events, degraded}``:
        a snapshot. ``remote_reads`` counts the ``XRANGE`` and ``XREAD`` commands this
        process sent to follow other processes' streams since it started (one per batch
        per stream, however many subscribers follow it here). ``dropped_events`` counts
        events dropped from full buffers while Redis was unreachable (they are still in
        the store once a checkpoint has saved them)."""
        return {
            "owned": len(self._owned),
            "remote": len(self._remote),
            "remote_reads": self._reads,
            "pending_events": sum(len(log._outbox) for log in self._pending.values()),
            "dropped_events": sum(log.dropped for log in self._owned.values()),
            "degraded": self._degraded,
        }

    # -- sending ------------------------------------------------------------------------

    def _dirty(self, log: _OwnedLog) -> None:
        """A log has unsent events: make sure the sender runs."""
        self._pending[log.stream_id] = log
        if log.closed:
            self._finished.append(log)
        if self._sender is None:
            self._wake_sender = asyncio.Event()
            self._sender = asyncio.get_running_loop().create_task(self._send_loop())
        assert self._wake_sender is not None
        self._wake_sender.set()

    async def _send_loop(self) -> None:
        assert self._wake_sender is not None
        backoff = 0.05
        while True:
            if not self._pending:
                self._wake_sender.clear()
                await self._wake_sender.wait()
                continue
            try:
                await self._send_round()
            except (*_UNREACHABLE, RedisError) as exc:  # e.g. refused auth: retried the same
                if not self._degraded:
                    what = "unreachable" if isinstance(exc, _UNREACHABLE) else "refused the send"
                    logger.warning("Redis %s, buffering events: %s", what, exc)
                self._degraded = True
                self._sent.notify()  # flushers stop waiting
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            if self._degraded:
                logger.warning("Redis reachable again; buffered events sent")
            self._degraded = False
            backoff = 0.05
            self._sent.notify()

    async def _send_round(self) -> None:
        """One round trip: the buffered events of every pending log (up to
        :data:`_ROUND_EVENTS`), its meta hash and its expiry, as one ``EVALSHA`` of
        :data:`_SEND_SCRIPT`.

        One script call, because Redis runs a script whole before it serves anything
        else: a reader blocked in another process's ``XREAD BLOCK`` takes the round's
        entries in one reply (in a plain pipeline it woke after the first ``XADD``:
        ``[1, 19]`` per 20-token burst, and a node following the stream fanned each
        burst out twice). ``MULTI``/``EXEC`` gave the same, for a ``QUEUED`` reply per
        command: one call and one reply instead of ~25 of each per burst. redis-py's
        :class:`~redis.commands.core.AsyncScript` loads the script again on
        ``NOSCRIPT`` (a restarted or flushed Redis)."""
        keys: list[str] = []
        args: list[bytes | str | int] = [self.max_events]
        budget = _ROUND_EVENTS
        sent: list[tuple[_OwnedLog, int]] = []
        for log in list(self._pending.values()):
            if budget <= 0:
                break
            batch = list(_take(log._outbox, budget))
            if not batch:
                del self._pending[log.stream_id]
                continue
            budget -= len(batch)
            key = self._key(log.stream_id)
            keys += (key, key + ":meta")
            ttl = self.retention if batch[-1].type == STREAM_END else self.live_ttl
            args += (log.session_id, max(1, int(ttl * 1000)), len(batch))
            for event in batch:
                args += (f"{event.seq}-0", event.json())
            sent.append((log, batch[-1].seq))
        if not sent:
            return
        refused = await self._send_script(keys=keys, args=args)
        for error in refused:
            text = error.decode() if isinstance(error, bytes) else error
            logger.error("Redis refused an event-log command: %s", text)
        for log, seq in sent:
            outbox = log._outbox
            while outbox and outbox[0].seq <= seq:
                outbox.popleft()
            log.sent_seq = max(log.sent_seq, seq)
            if not outbox:
                self._pending.pop(log.stream_id, None)

    # -- cancel requests ------------------------------------------------------------------

    def _channel(self, node_id: str) -> str:
        return f"{self.prefix}:cancel:{node_id}"

    async def request_cancel(self, stream_id: str, owner: str) -> bool:
        """``PUBLISH`` the request on ``owner``'s channel; ``True`` if a process
        listening as ``owner`` received it.

        :raises EventLogUnavailable: if Redis cannot be reached.
        """
        with self._errors(stream_id):
            receivers = await self._client.publish(self._channel(owner), stream_id)
        return bool(receivers)

    async def serve_cancel_requests(self, node_id: str, handler: Callable[[str], object]) -> None:
        """Subscribe to ``node_id``'s channel and call ``handler(stream_id)`` per request,
        until cancelled; reconnects after a lost connection."""
        backoff = 0.05
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel(node_id))
                backoff = 0.05
                async for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes):
                        handler(data.decode())
            except _UNREACHABLE as exc:
                logger.warning("cancel channel of %s lost, reconnecting: %s", node_id, exc)
            finally:
                with anyio.CancelScope(shield=True), contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    # -- errors and closing ---------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, stream_id: str | None) -> Iterator[None]:
        """Redis unreachable -> :class:`EventLogUnavailable` (chained)."""
        try:
            yield
        except _UNREACHABLE as exc:
            raise EventLogUnavailable(
                f"the event log at {self._safe_url()} cannot be reached ({exc}); follow the "
                "stream again once it is back (the store holds every checkpointed event)",
                stream_id,
            ) from exc

    def _safe_url(self) -> str:
        scheme, sep, rest = self.url.partition("://")
        return f"{scheme}{sep}{rest.rpartition('@')[2]}"  # no password in messages

    async def aclose(self) -> None:
        """Send what is buffered (waiting at most ``close_timeout`` seconds), stop the
        sender and the views' reader tasks and close the connections; idempotent."""
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self.close_timeout):
                while self._pending and self._sender is not None and not self._degraded:
                    await self._sent.wait()
            if self._sender is not None:
                self._sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._sender
                self._sender = None
            for view in list(self._remote.values()):  # their waiters are woken (stalled)
                follower = view._follower
                if follower is not None:
                    follower.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await follower
            with contextlib.suppress(RedisError, OSError):
                await self._client.aclose()


def _take(outbox: deque[Event], n: int) -> Iterator[Event]:
    for i, event in enumerate(outbox):
        if i >= n:
            return
        yield event
