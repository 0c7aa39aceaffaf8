"""Events: what a stream carries, and how an event is written as SSE."""

from __future__ import annotations

from typing import Any, Final

import orjson

from ._json import kept

__all__ = ["EVENT_TYPES", "TERMINAL_TYPES", "Event", "encode_sse"]

STREAM_STARTED: Final = "stream.started"
TOKEN: Final = "token"
REASONING: Final = "reasoning"
TOOL_STARTED: Final = "tool.started"
TOOL_COMPLETED: Final = "tool.completed"
MESSAGE: Final = "message"
CHECKPOINT: Final = "checkpoint"
TITLE: Final = "title"
USAGE: Final = "usage"
ERROR: Final = "error"
CANCELLED: Final = "cancelled"
DONE: Final = "done"
STREAM_END: Final = "stream.end"

#: Every event type, in the order a turn usually emits them.
EVENT_TYPES: Final = frozenset(
    {
        STREAM_STARTED,
        TOKEN,
        REASONING,
        TOOL_STARTED,
        TOOL_COMPLETED,
        MESSAGE,
        CHECKPOINT,
        TITLE,
        USAGE,
        ERROR,
        CANCELLED,
        DONE,
        STREAM_END,
    }
)
#: The event that ends a turn's work; ``stream.end`` always follows it.
TERMINAL_TYPES: Final = frozenset({DONE, ERROR, CANCELLED})


class Event:
    """One event of a stream.

    :ivar seq: position in the stream, 1, 2, 3 … without gaps.
    :ivar stream_id: the stream (one turn).
    :ivar session_id: the session the turn belongs to.
    :ivar type: one of :data:`EVENT_TYPES`.
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
