"""The session model: one conversation, its messages and its stream bookkeeping."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from ._exceptions import InvalidSessionId, MetadataOnlyError

__all__ = [
    "MAX_TITLE_CHARS",
    "Message",
    "Session",
    "new_session_id",
    "validate_session_id",
    "validate_title",
]

#: Longest session title, in characters.
MAX_TITLE_CHARS = 200

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: An OpenAI chat-completions message dict: ``role``, ``content``, ``tool_calls``,
#: ``tool_call_id``, ``name``, plus ``timestamp`` and markers such as ``_error``,
#: ``_partial``, ``_recovered`` and ``type``.
Message = dict[str, Any]

_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

#: Fields stored beside ``messages`` (everything but the message list).
META_FIELDS = (
    "session_id",
    "title",
    "model",
    "model_provider",
    "workspace",
    "created_at",
    "updated_at",
    "active_stream_id",
    "pending_user_message",
    "pending_started_at",
    "metadata",
)


def validate_session_id(session_id: object) -> str:
    """Return ``session_id`` if it matches ``[A-Za-z0-9_-]{1,64}``.

    :raises InvalidSessionId: naming the value and the rule, before any I/O.
    """
    if not isinstance(session_id, str) or _SESSION_ID.fullmatch(session_id) is None:
        raise InvalidSessionId(
            f"invalid session id {session_id!r}: must match [A-Za-z0-9_-]{{1,64}}"
        )
    return session_id


def validate_title(title: object) -> str:
    """Return ``title`` if it is a string with visible text, at most
    :data:`MAX_TITLE_CHARS` characters and no control characters (NUL, newlines, …).

    :raises ValueError: naming the value and the rule.
    """
    if not isinstance(title, str) or not title.strip():
        raise ValueError(f"invalid title {title!r}: must be a non-empty string")
    if len(title) > MAX_TITLE_CHARS:
        raise ValueError(
            f"invalid title {title[:40]!r}…: {len(title)} characters, at most "
            f"{MAX_TITLE_CHARS} allowed"
        )
    bad = _CONTROL.search(title)
    if bad is not None:
        raise ValueError(
            f"invalid title {title[:60]!r}: control character {bad.group()!r} is not allowed"
        )
    return title


def new_session_id() -> str:
    """A fresh session id: 32 lowercase hex digits (uuid4)."""
    return uuid.uuid4().hex


class Session:
    """One conversation.

    Times are epoch seconds (``float``). ``messages`` is a list of OpenAI
    chat-completions dicts. A session returned by ``Store.load_metadata()`` has
    ``metadata_only == True``: reading its ``messages`` raises
    :class:`~runtime.MetadataOnlyError` and saving it raises
    :class:`~runtime.MetadataOnlySaveError`; ``message_count`` is still right.
    """

    __slots__ = (
        "_message_count",
        "_messages",
        "active_stream_id",
        "created_at",
        "metadata",
        "model",
        "model_provider",
        "pending_started_at",
        "pending_user_message",
        "session_id",
        "title",
        "updated_at",
        "workspace",
    )

    def __init__(
        self,
        session_id: str | None = None,
        *,
        title: str = "Untitled",
        model: str | None = None,
        model_provider: str | None = None,
        workspace: str | None = None,
        created_at: float | None = None,
        updated_at: float | None = None,
        messages: list[Message] | None = None,
        active_stream_id: str | None = None,
        pending_user_message: str | None = None,
        pending_started_at: float | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """:raises InvalidSessionId: if ``session_id`` breaks the id rule."""
        now = time.time()
        self.session_id = (
            new_session_id() if session_id is None else validate_session_id(session_id)
        )
        self.title = title
        self.model = model
        self.model_provider = model_provider
        self.workspace = workspace
        self.created_at = now if created_at is None else created_at
        self.updated_at = self.created_at if updated_at is None else updated_at
        self._messages: list[Message] | None = [] if messages is None else messages
        self._message_count = 0
        self.active_stream_id = active_stream_id
        self.pending_user_message = pending_user_message
        self.pending_started_at = pending_started_at
        self.metadata: dict[str, Any] = {} if metadata is None else metadata

    # -- messages -----------------------------------------------------------------

    @property
    def metadata_only(self) -> bool:
        """True for an object from ``load_metadata()``: no messages, cannot be saved."""
        return self._messages is None

    @property
    def messages(self) -> list[Message]:
        """The message list (mutable, owned by this object).

        :raises MetadataOnlyError: on a metadata-only session.
        """
        if self._messages is None:
            raise MetadataOnlyError(
                f"session {self.session_id!r} was loaded metadata-only; its messages are "
                "not loaded (use a full load)"
            )
        return self._messages

    @messages.setter
    def messages(self, value: list[Message]) -> None:
        if self._messages is None:
            raise MetadataOnlyError(
                f"session {self.session_id!r} was loaded metadata-only; it cannot take messages"
            )
        self._messages = value

    @property
    def message_count(self) -> int:
        """Number of messages, also right on a metadata-only session."""
        return self._message_count if self._messages is None else len(self._messages)

    @property
    def is_streaming(self) -> bool:
        """True while ``active_stream_id`` is set (live or stale)."""
        return self.active_stream_id is not None

    @property
    def is_empty_untitled(self) -> bool:
        """An "Untitled" session with no messages and no stream: hidden from lists."""
        return (
            self.title == "Untitled"
            and self.message_count == 0
            and self.active_stream_id is None
            and self.pending_user_message is None
        )

    # -- (de)serialisation --------------------------------------------------------

    def meta_dict(self) -> dict[str, Any]:
        """Every field but ``messages``, JSON-ready, plus ``message_count``."""
        d = {name: getattr(self, name) for name in META_FIELDS}
        d["message_count"] = self.message_count
        return d

    def to_dict(self) -> dict[str, Any]:
        """The whole session as a JSON-ready dict.

        :raises MetadataOnlyError: on a metadata-only session.
        """
        d = self.meta_dict()
        d["messages"] = self.messages
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, metadata_only: bool = False) -> Session:
        """Build a session from :meth:`to_dict` output (messages are not copied).

        :raises InvalidSessionId: if ``data["session_id"]`` breaks the id rule.
        :raises KeyError: if ``session_id`` is missing.
        """
        s = cls(
            data["session_id"],
            title=data.get("title", "Untitled"),
            model=data.get("model"),
            model_provider=data.get("model_provider"),
            workspace=data.get("workspace"),
            created_at=data.get("created_at"),
            updated_at=data.get("updated_at"),
            messages=None if metadata_only else data.get("messages") or [],
            active_stream_id=data.get("active_stream_id"),
            pending_user_message=data.get("pending_user_message"),
            pending_started_at=data.get("pending_started_at"),
            metadata=data.get("metadata") or {},
        )
        if metadata_only:
            s._messages = None
            count = data.get("message_count")
            if count is None:
                count = len(data.get("messages") or ())
            s._message_count = int(count)
        return s

    def copy(self) -> Session:
        """A copy whose message list (not the dicts in it) and metadata are new objects."""
        s = Session.from_dict(self.meta_dict(), metadata_only=self.metadata_only)
        if self._messages is not None:
            s._messages = list(self._messages)
        s.metadata = dict(self.metadata)
        return s

    def __repr__(self) -> str:
        return (
            f"Session(session_id={self.session_id!r}, title={self.title!r}, "
            f"messages={self.message_count}{', metadata_only' if self.metadata_only else ''}, "
            f"active_stream_id={self.active_stream_id!r})"
        )
