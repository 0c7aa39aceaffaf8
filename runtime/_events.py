"""Events: what a stream carries, and how an event is written as SSE."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any, Final, Literal, NotRequired, TypedDict, overload

import orjson

from ._json import kept

__all__ = [
    "EVENT_TYPES",
    "TERMINAL_TYPES",
    "CancelledData",
    "CheckpointData",
    "DoneData",
    "ErrorData",
    "Event",
    "EventRecords",
    "EventType",
    "MessageData",
    "Outcome",
    "StreamEndData",
    "StreamResumedData",
    "StreamStartedData",
    "TextData",
    "TitleData",
    "ToolCompletedData",
    "ToolStartedData",
    "UsageData",
    "column_records",
    "encode_sse",
    "event_records",
    "events_from_records",
    "record_last_seq",
    "records_after",
]


class EventType(StrEnum):
    """The type of an event (``Event.type``); each member is equal to its string."""

    STREAM_STARTED = "stream.started"
    STREAM_RESUMED = "stream.resumed"
    TOKEN = "token"
    REASONING = "reasoning"
    TOOL_STARTED = "tool.started"
    TOOL_COMPLETED = "tool.completed"
    MESSAGE = "message"
    CHECKPOINT = "checkpoint"
    TITLE = "title"
    USAGE = "usage"
    ERROR = "error"
    CANCELLED = "cancelled"
    DONE = "done"
    STREAM_END = "stream.end"


#: How a turn ended: the ``outcome`` of ``stream.end``.
Outcome = Literal["done", "error", "cancelled", "lease_lost"]

STREAM_STARTED: Final = EventType.STREAM_STARTED
STREAM_RESUMED: Final = EventType.STREAM_RESUMED
TOKEN: Final = EventType.TOKEN
REASONING: Final = EventType.REASONING
TOOL_STARTED: Final = EventType.TOOL_STARTED
TOOL_COMPLETED: Final = EventType.TOOL_COMPLETED
MESSAGE: Final = EventType.MESSAGE
CHECKPOINT: Final = EventType.CHECKPOINT
TITLE: Final = EventType.TITLE
USAGE: Final = EventType.USAGE
ERROR: Final = EventType.ERROR
CANCELLED: Final = EventType.CANCELLED
DONE: Final = EventType.DONE
STREAM_END: Final = EventType.STREAM_END

#: Every event type.
EVENT_TYPES: Final = frozenset(EventType)
#: The event that ends a turn's work; ``stream.end`` always follows it.
TERMINAL_TYPES: Final = frozenset({DONE, ERROR, CANCELLED})


# -- payloads (``Event.data``) of each type -----------------------------------------------


class StreamStartedData(TypedDict):
    """``stream.started``: the user's message and when the turn was accepted (epoch s)."""

    user_message: str
    pending_started_at: float


class StreamResumedData(TypedDict):
    """``stream.resumed``: the turn continues after its process stopped, as attempt
    ``attempt`` (1 for the first resume) of the SAME stream.

    Every event with ``disregard_after < seq < `` *this event's seq* is superseded:

    * ``last_durable_seq`` is the last event the store held when the turn resumed. The
      seqs after it, up to this event's, were never durable (published by the process
      that died, or never used, or used by a made-up ``interrupted`` ending a reader
      may have been shown): they are void and never sent again, so ``seq`` jumps here.
    * ``disregard_after <= last_durable_seq``: the durable events after it are the
      tokens (and reasoning, usage, checkpoints) of the assistant text that was still
      streaming; that draft is dropped from the transcript and streamed again, so a
      client must remove the text it showed from those events.

    ``reason`` is ``"process_restart"`` (resumed by ``resume="auto"`` or by hand).
    """

    attempt: int
    last_durable_seq: int
    disregard_after: int
    reason: str


class TextData(TypedDict):
    """``token`` and ``reasoning``: a piece of streamed text."""

    text: str


class ToolStartedData(TypedDict):
    """``tool.started``: the call id (the model's when it gave one), the tool's name and
    its arguments (the parsed JSON object, or the raw string when it is not one)."""

    call_id: str
    name: str
    arguments: dict[str, Any] | str


class ToolCompletedData(TypedDict):
    """``tool.completed``: the result (``None`` when the call failed), the error text
    (``None`` on success), the call's duration in seconds, and the tool's own one-line
    ``summary`` when it set one."""

    call_id: str
    name: str
    result: Any
    error: str | None
    duration_s: float
    summary: NotRequired[str]


class MessageData(TypedDict):
    """``message``: a finished chat-completions message of the transcript."""

    message: dict[str, Any]


class CheckpointData(TypedDict):
    """``checkpoint``: the message count and activity counter the save persisted, and
    the last event seq it made durable; or, for a save that failed, ``error``,
    ``failures`` (in a row), ``retry_in_s`` (seconds) and the unchanged
    ``persisted_seq``."""

    persisted_seq: int
    messages: NotRequired[int]
    activity: NotRequired[int]
    error: NotRequired[str]
    failures: NotRequired[int]
    retry_in_s: NotRequired[float]


class TitleData(TypedDict):
    """``title``: the session's new title."""

    title: str


class UsageData(TypedDict, total=False):
    """``usage``: token counts of one model call (OpenAI's names); other integer counts
    an agent reports are passed through."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ErrorData(TypedDict, total=False):
    """``error``: ``type`` is ``agent_error`` (the agent raised; ``error_type`` names the
    exception class), ``save_failed``, ``save_timeout``, ``lease_lost``, ``interrupted``
    (the process running the stream died) or ``resume_exhausted`` (it died again after
    ``attempts`` resumes; everything it produced is kept)."""

    type: str
    error_type: str
    message: str
    attempts: int


class CancelledData(TypedDict):
    """``cancelled``: why the turn stopped."""

    reason: str


class DoneData(TypedDict):
    """``done``: the number of messages the final save persisted."""

    messages: int


class StreamEndData(TypedDict):
    """``stream.end``: how the turn ended."""

    outcome: Outcome


class Event:
    """One event of a stream.

    :ivar seq: position in the stream, 1, 2, 3 … without gaps.
    :ivar stream_id: the stream (one turn).
    :ivar session_id: the session the turn belongs to.
    :ivar type: an :class:`EventType` (a ``str``; events read back from a store carry
        the plain string, which compares equal).
    :ivar data: a JSON-ready dict.
    :ivar ts: when it was published, epoch seconds.
    """

    __slots__ = ("_json", "data", "seq", "session_id", "stream_id", "ts", "type")

    def __init__(
        self,
        seq: int,
        stream_id: str,
        session_id: str,
        type: str,
        data: dict[str, Any],
        ts: float,
    ) -> None:
        self.seq = seq
        self.stream_id = stream_id
        self.session_id = session_id
        self.type = type
        self.data = data
        self.ts = ts
        self._json: bytes | None = None

    def json(self) -> bytes:
        """The JSON of :meth:`to_dict`, as UTF-8 bytes; encoded once and cached, so the
        SSE writer, the event log's compact window and the store share one encoding.

        An event is immutable once published; changing ``data`` afterwards is not
        reflected here.

        :raises TypeError: if ``data`` is not JSON-ready (orjson's rules).
        """
        encoded = self._json
        if encoded is None:
            encoded = self._json = kept(orjson.dumps(self.to_dict()))
        return encoded

    def to_dict(self) -> dict[str, Any]:
        """``{seq, stream_id, session_id, type, data, ts}``."""
        return {
            "seq": self.seq,
            "stream_id": self.stream_id,
            "session_id": self.session_id,
            "type": self.type,
            "data": self.data,
            "ts": self.ts,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        """Inverse of :meth:`to_dict`.

        :raises KeyError: if a field is missing.
        """
        return cls(d["seq"], d["stream_id"], d["session_id"], d["type"], d["data"], d["ts"])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Event(seq={self.seq}, type={self.type!r}, data={self.data!r})"


def encode_sse(event: Event) -> bytes:
    """One Server-Sent Events message (WHATWG HTML, "Server-sent events").

    ``id: <seq>``, ``event: <type>``, ``data: <json of to_dict()>`` and a blank line.
    JSON never contains a raw newline, so one ``data:`` line suffices.
    """
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        event.seq,
        event.type.encode(),
        event.json(),
    )


# -- the durable record of events -----------------------------------------------------
#
# A store persists a stream's events as records, one JSON object each. A record is
# either one event (``Event.to_dict()``) or a RUN: two or more consecutive events of
# one stream, all ``token`` (or all ``reasoning``) with data exactly ``{"text": str}``,
# held as ``{"seq": first seq, "stream_id", "session_id", "type", "texts": [str, ...],
# "ts": [float, ...]}`` (the run's events have seqs ``seq, seq + 1, ...``; a ``texts``
# key is what marks a run). A streamed reply is thousands of such events: one record
# costs one encoding and a few dozen bytes of keys instead of one per event. Readers
# expand runs back into the same events (same seq, ts, data).

#: Event types whose consecutive events with data ``{"text": str}`` form one run.
RUN_TYPES: Final = frozenset({TOKEN, REASONING})


def event_records(events: Sequence[Event]) -> list[dict[str, Any]]:
    """The durable records of ``events`` (in the given order): each run of two or more
    consecutive text events (see :data:`RUN_TYPES`; consecutive seqs of one stream and
    session, one type, data exactly ``{"text": str}``) as one run record, every other
    event as ``Event.to_dict()``. The records share the events' data dicts and strings.

    :returns: ``list[dict]``, JSON-ready when the events' data are; for an
        :class:`EventRecords`, its own :attr:`~EventRecords.records`.
    """
    if isinstance(events, EventRecords):
        return events.records
    out: list[dict[str, Any]] = []
    texts: list[str] = []
    times: list[float] = []
    run: dict[str, Any] | None = None  # the open run (None: none)
    after = -1  # the seq that extends the open run
    for e in events:
        data = e.data
        typ = e.type
        if typ in RUN_TYPES and len(data) == 1 and type(text := data.get("text")) is str:
            if (
                e.seq == after
                and run is not None
                and typ == run["type"]
                and e.stream_id == run["stream_id"]
                and e.session_id == run["session_id"]
            ):
                texts.append(text)
                times.append(e.ts)
                after += 1
                continue
            texts, times = [text], [e.ts]
            run = {
                "seq": e.seq,
                "stream_id": e.stream_id,
                "session_id": e.session_id,
                "type": typ,
                "texts": texts,
                "ts": times,
            }
            out.append(run)
            after = e.seq + 1
            continue
        out.append(e.to_dict())
        run, after = None, -1
    return _unrun_singles(out)


def column_records(
    first_seq: int,
    stream_id: str,
    session_id: str,
    types: Sequence[str],
    data: Sequence[dict[str, Any]],
    ts: Sequence[float],
) -> list[dict[str, Any]]:
    """:func:`event_records` of the events ``first_seq, first_seq + 1, ...`` of one
    stream given as columns (an event log's retained window), without building an
    :class:`Event` for each.

    :returns: ``list[dict]``; the three columns must have the same length.
    """
    out: list[dict[str, Any]] = []
    texts: list[str] = []
    times: list[float] = []
    run_type: str | None = None  # the open run's type (None: no run open)
    for i, typ in enumerate(types):
        d = data[i]
        if typ in RUN_TYPES and len(d) == 1 and type(text := d.get("text")) is str:
            if typ == run_type:
                texts.append(text)
                times.append(ts[i])
                continue
            texts, times, run_type = [text], [ts[i]], typ
            out.append(
                {
                    "seq": first_seq + i,
                    "stream_id": stream_id,
                    "session_id": session_id,
                    "type": typ,
                    "texts": texts,
                    "ts": times,
                }
            )
            continue
        out.append(
            {
                "seq": first_seq + i,
                "stream_id": stream_id,
                "session_id": session_id,
                "type": typ,
                "data": d,
                "ts": ts[i],
            }
        )
        run_type = None
    return _unrun_singles(out)


def _unrun_singles(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` with every run of one event written as the event it is."""
    for i, rec in enumerate(records):
        held = rec.get("texts")
        if held is not None and len(held) == 1:
            records[i] = _single(rec, 0)
    return records


class EventRecords(Sequence[Event]):
    """Events held as their durable records (:func:`event_records`), as the runner
    hands them to :meth:`runtime.Store.save`: a store that writes records takes
    :attr:`records` as they are (``event_records`` returns them), so a run of tokens
    is never rebuilt as one :class:`Event` per token only to be encoded again. As a
    sequence it is the events themselves, expanded on first use.

    :ivar records: ``list[dict]``, in seq order.
    """

    __slots__ = ("_events", "_len", "records")

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self._len = sum(len(r["texts"]) if "texts" in r else 1 for r in records)
        self._events: list[Event] | None = None

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...
    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        events = self._events
        if events is None:
            events = self._events = events_from_records(self.records)
        return events[index]

    def __repr__(self) -> str:
        return f"EventRecords({len(self.records)} records, {self._len} events)"


def _single(run: dict[str, Any], i: int) -> dict[str, Any]:
    """Event ``i`` of a run record, as ``Event.to_dict()``."""
    return {
        "seq": run["seq"] + i,
        "stream_id": run["stream_id"],
        "session_id": run["session_id"],
        "type": run["type"],
        "data": {"text": run["texts"][i]},
        "ts": run["ts"][i],
    }


def record_last_seq(record: dict[str, Any]) -> int:
    """The seq of the last event a record holds.

    :raises KeyError: if ``seq`` is missing.
    """
    texts = record.get("texts")
    return int(record["seq"]) + (0 if texts is None else len(texts) - 1)


def records_after(records: Iterable[dict[str, Any]], after_seq: int) -> list[dict[str, Any]]:
    """The records (in seq order) holding events with ``seq > after_seq``, each seq
    once: a run that starts at or before ``after_seq``, or at or before the last seq
    of an earlier record (two saves that overlapped), is cut to its later events (a new
    dict; ``records`` is not changed); a record with nothing new is left out.

    :raises KeyError: if a record has no ``seq``.
    """
    out: list[dict[str, Any]] = []
    last = after_seq
    for rec in records:
        first = rec["seq"]
        if first > last:
            out.append(rec)
        elif "texts" in rec and record_last_seq(rec) > last:
            k = last + 1 - first
            rec = rec | {"seq": last + 1, "texts": rec["texts"][k:], "ts": rec["ts"][k:]}
            out.append(rec)
        else:
            continue
        last = record_last_seq(rec)
    return out


def events_from_records(records: Iterable[dict[str, Any]], after_seq: int = 0) -> list[Event]:
    """The events the records hold with ``seq > after_seq``, in record order: runs
    expanded into their events, each with its own ``{"text"}`` dict and timestamp.
    Nothing is merged or dropped besides that filter (see :func:`records_after` to keep
    each seq once when records may overlap).

    :raises KeyError: if a record lacks a field of :meth:`Event.to_dict`.
    :raises ValueError: if a run's ``texts`` and ``ts`` differ in length.
    """
    out: list[Event] = []
    append = out.append
    for rec in records:
        texts = rec.get("texts")
        if texts is None:
            if rec["seq"] > after_seq:
                append(Event.from_dict(rec))
            continue
        first, times = rec["seq"], rec["ts"]
        if len(texts) != len(times):
            raise ValueError(
                f"invalid event record at seq {first}: {len(texts)} texts but "
                f"{len(times)} timestamps (a run needs one of each per event)"
            )
        skip = max(after_seq + 1 - first, 0)
        sid, session, typ = rec["stream_id"], rec["session_id"], rec["type"]
        seq = first + skip
        for text, ts in zip(texts[skip:], times[skip:], strict=True):
            append(Event(seq, sid, session, typ, {"text": text}, ts))
            seq += 1
    return out
