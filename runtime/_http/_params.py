"""Validation of path parameters, query parameters and headers (request bodies go
through their pydantic models, :mod:`runtime._http._models`).

These stay small functions rather than models: the SSE route, which a fan-out hits
once per subscriber, reads only these, and they cost next to nothing. Every check
raises :class:`ApiError` (400) naming the value and the rule, before the runtime is
touched.
"""

from __future__ import annotations

import re

from starlette.requests import Request

from .._session import validate_session_id
from ._errors import ApiError
from ._models import STREAM_ID_PATTERN

__all__ = [
    "parse_flag",
    "parse_limit",
    "resume_after",
    "session_id_param",
    "stream_id_param",
]

_DIGITS = re.compile(r"[0-9]{1,18}")
_STREAM_ID = re.compile(STREAM_ID_PATTERN)
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def session_id_param(request: Request) -> str:
    """The ``{id}`` path parameter, checked against ``[A-Za-z0-9_-]{1,64}``.

    :raises ApiError: 400 ``invalid_session_id``.
    """
    value = request.path_params["session_id"]
    try:
        return validate_session_id(value)
    except ValueError as exc:
        raise ApiError(400, "invalid_session_id", str(exc)) from exc


def stream_id_param(request: Request) -> str:
    """The ``{stream_id}`` path parameter, checked against ``[A-Za-z0-9_.:-]{1,128}``.

    :raises ApiError: 400 ``invalid_stream_id``.
    """
    value: str = request.path_params["stream_id"]
    if _STREAM_ID.fullmatch(value) is None:
        raise ApiError(
            400,
            "invalid_stream_id",
            f"invalid stream id {value!r}: must match [A-Za-z0-9_.:-]{{1,128}}",
        )
    return value


def parse_seq(value: str, name: str) -> int:
    """A non-negative event ``seq`` written in ASCII digits (at most 18).

    :raises ApiError: 400 ``invalid_<name>`` for ``-1``, ``abc``, ``1.5``, ``+3``, ….
    """
    text = value.strip()
    if _DIGITS.fullmatch(text) is None:
        code = "invalid_" + name.lower().replace("-", "_")
        raise ApiError(
            400, code, f"invalid {name} {value!r}: must be a non-negative integer event seq"
        )
    return int(text)


def resume_after(request: Request) -> tuple[int, str]:
    """Where an SSE subscriber resumes, and from which input: the ``Last-Event-ID``
    header if present and non-blank (it wins), else ``?after_seq=``, else 0.

    :raises ApiError: 400 ``invalid_last_event_id`` / ``invalid_after_seq``.
    """
    header = request.headers.get("last-event-id")
    if header is not None and header.strip():
        return parse_seq(header, "Last-Event-ID"), "Last-Event-ID"
    query = request.query_params.get("after_seq")
    if query is not None:
        return parse_seq(query, "after_seq"), "after_seq"
    return 0, "after_seq"


def parse_limit(request: Request, default: int = 50) -> int:
    """``?limit=``: an integer from 1 to 1000.

    :raises ApiError: 400 ``invalid_limit``.
    """
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    text = raw.strip()
    if _DIGITS.fullmatch(text) is None or not 1 <= int(text) <= 1000:
        raise ApiError(400, "invalid_limit", f"invalid limit {raw!r}: must be an integer 1-1000")
    return int(text)


def parse_flag(request: Request, name: str) -> bool:
    """A boolean query flag: ``1/true/yes/on`` or ``0/false/no/off``; absent is false.

    :raises ApiError: 400 ``invalid_<name>``.
    """
    raw = request.query_params.get(name)
    if raw is None:
        return False
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ApiError(
        400, f"invalid_{name}", f"invalid {name} {raw!r}: must be one of 1, true, 0, false"
    )
