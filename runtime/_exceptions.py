"""The error tree of ``runtime``.

Every error the library raises on purpose derives from :class:`Error`. Where a
builtin says the same thing, the class mixes it in, so ``except LookupError``
keeps working for callers who do not know this library::

    Error
    ├── InvalidSessionId(Error, ValueError)        a session id breaks [A-Za-z0-9_-]{1,64}
    ├── SessionNotFound(Error, LookupError)        no session has that id
    ├── StreamNotFound(Error, LookupError)         no stream has that id (live or retained)
    ├── ToolCallNotFound(Error, LookupError)       no tool call with that id is in the ledger
    ├── SessionBusy(Error)                         a live stream already owns the session
    ├── LeaseLost(Error)                           another process took the session's lease
    ├── MetadataOnlyError(Error, RuntimeError)     messages of a metadata-only session were read
    │   └── MetadataOnlySaveError                  a metadata-only session was saved
    ├── StoreError(Error)                          the backend failed (an outside cause)
    │   ├── StoreLocked                            another process owns the store root
    │   ├── EmptyOverwriteRefused(StoreError, RuntimeError)
    │   │                                          would replace stored messages with [] mid-stream
    │   ├── CorruptSession                         a session file cannot be decoded
    │   └── WriteConflict                          a conditional write met another writer
    ├── StoreClosed(Error, RuntimeError)           the store was used after ``aclose()``
    ├── InvalidCursor(Error, ValueError)           a pagination cursor cannot be decoded
    ├── SubscriberLagged(Error)                    a subscriber fell behind the retained window
    ├── EventLogUnavailable(Error)                 the shared event log (Redis) cannot be reached
    └── AgentLoadError(Error, ValueError)          an ``AGENT`` spec cannot be resolved

"You closed it" (:class:`StoreClosed`) and "an outside cause" (:class:`StoreError`)
are different classes, as in trio's ``ClosedResourceError`` / ``BrokenResourceError``.
"""

from __future__ import annotations

__all__ = [
    "AgentLoadError",
    "CorruptSession",
    "EmptyOverwriteRefused",
    "Error",
    "EventLogUnavailable",
    "InvalidCursor",
    "InvalidSessionId",
    "LeaseLost",
    "MetadataOnlyError",
    "MetadataOnlySaveError",
    "SessionBusy",
    "SessionNotFound",
    "StoreClosed",
    "StoreError",
    "StoreLocked",
    "StreamNotFound",
    "SubscriberLagged",
    "ToolCallNotFound",
    "WriteConflict",
]


class Error(Exception):
    """Base class of every error ``runtime`` raises on purpose."""


class InvalidSessionId(Error, ValueError):
    """A session id does not match ``[A-Za-z0-9_-]{1,64}``; raised before any disk access."""


class SessionNotFound(Error, LookupError):
    """No session with the given id exists in the store (or it was deleted)."""


class StreamNotFound(Error, LookupError):
    """No live or retained stream has the given id."""


class ToolCallNotFound(Error, LookupError):
    """The tool ledger holds no intent for the tool call a result was recorded for
    (``Store.record_tool_result`` before ``Store.record_tool_call``); nothing was written."""


class SessionBusy(Error):
    """A live stream already owns the session; wait for it or cancel it.

    :ivar session_id: the session.
    :ivar active_stream_id: the stream that owns it.
    """

    def __init__(self, session_id: str, active_stream_id: str) -> None:
        super().__init__(f"session {session_id!r} is busy with live stream {active_stream_id!r}")
        self.session_id = session_id
        self.active_stream_id = active_stream_id


class NothingToResume(Error):
    """``Runtime.resume`` found no interrupted turn in the session: its last turn ended
    (or was discarded, or a new one started), or was started by a runtime that kept no
    resume record. Nothing was written.

    :ivar session_id: the session.
    """

    def __init__(self, session_id: str, detail: str) -> None:
        super().__init__(f"session {session_id!r} has no interrupted turn to resume: {detail}")
        self.session_id = session_id


class HistoryMismatch(Error, ValueError):
    """A turn asked to rewind the session's history to a point it does not have
    (``Runtime.start_turn(rewind_to=...)`` past its messages, or a chat client whose
    messages do not line up with the stored transcript): the caller's view of the
    history is out of date. Nothing was written.

    :ivar session_id: the session.
    """

    def __init__(self, session_id: str, detail: str) -> None:
        super().__init__(f"session {session_id!r}: {detail}")
        self.session_id = session_id


class LeaseLost(Error):
    """A write of a running turn was fenced off: the session's lease is no longer held
    under the writer's token (it expired and another process claimed it, or a repair
    closed the stream). Nothing was written.

    :ivar session_id: the session.
    """

    def __init__(self, session_id: str, detail: str = "") -> None:
        super().__init__(
            f"lease on session {session_id!r} was lost{': ' + detail if detail else ''}; "
            "nothing was written"
        )
        self.session_id = session_id


class MetadataOnlyError(Error, RuntimeError):
    """The messages of a session loaded with ``load_metadata()`` were read."""


class MetadataOnlySaveError(MetadataOnlyError):
    """A metadata-only session was passed to ``save()``; raised before any I/O.

    Saving such an object once replaced a 1,000-message conversation with an
    empty one in the hermes-webui chat UI; the store refuses it outright.
    """


class StoreError(Error):
    """The storage backend failed for a reason outside the caller's control."""


class StoreLocked(StoreError):
    """Another process holds the advisory lock on the store root."""


class EmptyOverwriteRefused(StoreError, RuntimeError):
    """A save would replace the stored messages with an empty list while a stream is pending."""


class CorruptSession(StoreError):
    """A stored session cannot be decoded."""


class WriteConflict(StoreError):
    """A conditional write found a state another writer made; nothing was written:
    ``Store.write_document`` with an ``expected_version`` that is not the stored one, or
    ``Store.save`` with a :class:`~runtime.stores.abc.SaveDelta` whose ``base`` is not
    the stored message count. Read again and retry (a save: without the delta, or with
    one computed against :attr:`stored_count`).

    :ivar stored_count: for a refused delta, the message count the store holds (an
        ``int``); ``None`` otherwise.
    """

    def __init__(self, message: str, *, stored_count: int | None = None) -> None:
        super().__init__(message)
        self.stored_count = stored_count


class StoreClosed(Error, RuntimeError):
    """The store (or runtime) was used after it was closed."""


class InvalidCursor(Error, ValueError):
    """A ``list_sessions()`` cursor was not one the store handed out."""


class SubscriberLagged(Error):
    """A subscriber fell off the retained window of a stream's event log.

    :ivar stream_id: the stream.
    :ivar next_seq: the first ``seq`` still retained; resume from the durable log.
    """

    def __init__(self, stream_id: str, wanted_seq: int, first_retained_seq: int) -> None:
        super().__init__(
            f"stream {stream_id!r}: event seq {wanted_seq} is no longer retained "
            f"(oldest retained is {first_retained_seq}); resume from the durable log"
        )
        self.stream_id = stream_id
        self.wanted_seq = wanted_seq
        self.first_retained_seq = first_retained_seq


class EventLogUnavailable(Error):
    """The shared event log's server (Redis) cannot be reached: an outside cause. The
    turn goes on and checkpoints to the store; follow the stream again once the server is
    back (the events a checkpoint made durable come from the store).

    :ivar stream_id: the stream, or ``None`` when the request concerned none.
    """

    def __init__(self, message: str, stream_id: str | None = None) -> None:
        super().__init__(message)
        self.stream_id = stream_id


class AgentLoadError(Error, ValueError):
    """An ``AGENT`` spec (``path/file.py:function`` or ``module:function``) cannot be loaded."""
