"""Events: what a stream carries, and how an event is written as SSE."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final, Literal, NotRequired, TypedDict

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
    "encode_sse",
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
