"""The typed bodies of the HTTP API: pydantic models of what requests send and what
responses answer, from which the OpenAPI document's schemas are generated.

Request bodies are validated through their model (:func:`read_body`); a failure is a
400 ``invalid_body`` naming the field, the value and the rule. Response models only
describe: the routes answer plain dicts (encoded by orjson), and
``tests/http/test_http_openapi.py`` checks real answers against the generated schemas,
so no model runs per event or per response.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails
from starlette.requests import Request

from .._events import EventType
from .._session import validate_session_id, validate_title
from ._errors import ApiError

__all__ = [
    "MAX_BODY_BYTES",
    "SESSION_ID_PATTERN",
    "STREAM_ID_PATTERN",
    "Body",
    "CancelResult",
    "ChatMessages",
    "ChatRequest",
    "ChatStopped",
    "Error",
    "Event",
    "Interrupted",
    "Message",
    "NewSession",
    "NewTurn",
    "Rename",
    "RunAgentInput",
    "Session",
    "SessionMeta",
    "SessionPage",
    "Status",
    "StreamInfo",
    "StreamList",
    "TurnResumed",
    "TurnStarted",
    "UIMessage",
    "json_type",
    "read_body",
]

#: Largest accepted request body, in bytes.
MAX_BODY_BYTES = 1 << 20
#: Session ids (and the chat protocols' chat/thread ids): what ``validate_session_id`` checks.
SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
#: Stream ids, as ``start_turn`` makes them.
STREAM_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"

_EPOCH = "Epoch seconds."


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must be a string with non-whitespace text")
    return value


SessionId = Annotated[
    str,
    AfterValidator(validate_session_id),
    Field(json_schema_extra={"pattern": SESSION_ID_PATTERN}),
]
Title = Annotated[
    str, AfterValidator(validate_title), Field(json_schema_extra={"minLength": 1, "maxLength": 200})
]
Text = Annotated[
    str,
    AfterValidator(_non_blank),
    Field(json_schema_extra={"minLength": 1, "description": "Not only whitespace."}),
]
JsonObject = dict[str, Any]


class Body(BaseModel):
    """A request body: a JSON object with exactly the declared fields (strict types:
    no ``"1"`` for a number, no number for a string)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    #: ``error`` code of a field's validation failure, when not ``invalid_body``.
    error_codes: ClassVar[dict[str, str]] = {}


class Answer(BaseModel):
    """A response body (documentation only; answers are plain dicts)."""


# -- request bodies ----------------------------------------------------------------------


class NewSession(Body):
    """A new session; both fields are optional and an empty body counts as {}."""

    error_codes: ClassVar[dict[str, str]] = {"session_id": "invalid_session_id"}

    title: Title | None = None
    session_id: SessionId | None = Field(
        None, description="Client-chosen id (409 session_exists if taken)."
    )


class Rename(Body):
    """A session's new title."""

    title: Title


class NewTurn(Body):
    """A user message that starts a turn, with optional per-turn metadata and config."""

    message: Text
    metadata: JsonObject | None = Field(None, description="turn.metadata")
    config: JsonObject | None = Field(None, description="turn.config")
    rewind_to: int | None = Field(
        None,
        ge=0,
        description="Keep only the session's first rewind_to messages and answer after "
        "them (regenerate, edit); the rest are dropped for good.",
    )


class ChatRequest(Body):
    """The Vercel AI SDK's chat request (what DefaultChatTransport sends)."""

    id: SessionId = Field(description="The chat id, which is the session id.")
    messages: list[JsonObject] = Field(
        min_length=1, description="UI messages; the last one (role user) starts the turn."
    )
    trigger: Literal["submit-message", "regenerate-message"] = "submit-message"
    messageId: str | None = None
    metadata: JsonObject | None = None
    config: JsonObject | None = None


class RunAgentInput(Body):
    """AG-UI RunAgentInput; the last message (role user) starts the turn."""

    threadId: SessionId
    runId: str = Field(min_length=1)
    messages: list[JsonObject] = Field(min_length=1)
    parentRunId: str | None = None
    protocolVersion: str | None = None
    state: Any = None
    tools: list[Any] | None = None
    context: list[Any] | None = None
    forwardedProps: JsonObject | None = None
    resume: Any = None


# -- response bodies ---------------------------------------------------------------------


class Error(Answer):
    """Every error answer."""

    error: str = Field(description="Stable machine code.")
    detail: str = Field(description="What was wrong, naming the value.")
    active_stream_id: str | None = Field(None, description="409 session_busy only.")
    session_id: str | None = Field(None, description="409 only.")
    first_retained_seq: int | None = Field(None, description="410 only.")


class Message(Answer):
    """An OpenAI chat-completions message plus timestamp and markers."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | None = None
    tool_calls: list[JsonObject] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    timestamp: float | None = None


class SessionMeta(Answer):
    """A session without its messages."""

    session_id: str
    title: str
    model: str | None = None
    model_provider: str | None = None
    workspace: str | None = None
    created_at: float = Field(description=_EPOCH)
    updated_at: float = Field(description=_EPOCH)
    active_stream_id: str | None = None
    pending_user_message: str | None = None
    pending_started_at: float | None = None
    metadata: JsonObject = Field(default_factory=dict)
    message_count: int


class Session(SessionMeta):
    """A session; ``messages`` is absent with ``metadata_only=1``."""

    messages: list[Message] | None = None


class SessionPage(Answer):
    sessions: list[SessionMeta]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")


class Interrupted(Answer):
    """The last turn's process stopped; resumable with ``POST …/resume``."""

    stream_id: str
    attempt: int = Field(ge=0)
    attempts_left: int = Field(ge=0)


class Status(Answer):
    active_stream_id: str | None
    live: bool
    pending_user_message: str | None
    pending_started_at: float | None
    interrupted: Interrupted | None = None


class StreamInfo(Answer):
    stream_id: str
    user_message: str | None
    started_at: float | None
    live: bool


class StreamList(Answer):
    streams: list[StreamInfo]


class TurnStarted(Answer):
    stream_id: str
    session_id: str
    pending_started_at: float | None = Field(description=_EPOCH)


class TurnResumed(Answer):
    stream_id: str = Field(description="The same stream as the interrupted turn's.")
    session_id: str


class CancelResult(Answer):
    stream_id: str
    session_id: str
    cancelled: bool = Field(description="False if the stream had ended.")


class Event(Answer):
    """The JSON in each SSE ``data:`` line."""

    seq: int = Field(ge=1)
    stream_id: str
    session_id: str
    type: EventType
    data: JsonObject
    ts: float = Field(description=_EPOCH)


class UIMessage(Answer):
    """An AI SDK UI message."""

    id: str
    role: Literal["user", "assistant", "system"]
    parts: list[JsonObject]


class ChatMessages(Answer):
    id: str
    messages: list[UIMessage]


class ChatStopped(Answer):
    id: str
    stream_id: str | None
    cancelled: bool


# -- reading a request body --------------------------------------------------------------

M = TypeVar("M", bound=Body)


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type: object, array, string, number, …"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string" if isinstance(value, str) else type(value).__name__


#: The rule of a pydantic error type, in the words of JSON.
_RULES = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "bool_type": "must be a boolean",
    "dict_type": "must be a JSON object",
    "list_type": "must be an array",
}


def _where(loc: tuple[int | str, ...]) -> str:
    out = str(loc[0]) if loc else "body"
    return out + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[1:])


def _detail(model: type[Body], errors: list[ErrorDetails]) -> tuple[str, str]:
    """The ``(error code, detail)`` of a body's validation errors (the first one
    named; unknown fields listed together)."""
    extra = [str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden"]
    if extra:
        allowed = ", ".join(model.model_fields)
        return "invalid_body", (
            f"unknown field(s) {', '.join(map(repr, extra))}: allowed are {allowed}"
        )
    first = errors[0]
    kind, loc, value = first["type"], first["loc"], first.get("input")
    if kind == "model_type":
        return "invalid_body", f"request body must be a JSON object, not {json_type(value)}"
    name = _where(loc)
    code = model.error_codes.get(name, "invalid_body")
    if kind == "missing":
        return code, f"missing field {name!r}: required"
    if kind == "value_error":
        error = str((first.get("ctx") or {}).get("error", first["msg"]))
        if error.startswith(f"invalid {name} "):
            return code, error
        return code, f"invalid {name} {value!r}: {error}"
    if kind == "too_short" and isinstance(value, list):
        rule = "must be a non-empty array"
    else:
        rule = _RULES.get(kind) or first["msg"]
    return code, f"invalid {name} {value!r}: {rule}"


async def read_body(request: Request, model: type[M], *, empty_ok: bool = False) -> M:
    """The request body validated as ``model``.

    A body must come as ``Content-Type: application/json``: a cross-site page can send
    ``text/plain`` or form bodies without a CORS preflight, never JSON.

    :param empty_ok: an empty body (of any type) counts as ``{}``.
    :raises ApiError: 413 ``body_too_large`` over :data:`MAX_BODY_BYTES`; 415
        ``unsupported_media_type`` for another content type; 400 ``invalid_body`` (or
        the model's code for the field) for bad JSON, a non-object, unknown fields or a
        field that breaks its rule.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large", f"request body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if empty_ok and not raw.strip():
        return model()
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"invalid Content-Type {content_type!r}: send the body as application/json",
        )
    if not raw.strip():
        raise ApiError(400, "invalid_body", "request body is empty: expected a JSON object")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_body", f"request body is not valid JSON: {exc}") from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        code, detail = _detail(model, exc.errors(include_url=False))
        raise ApiError(400, code, detail) from None
