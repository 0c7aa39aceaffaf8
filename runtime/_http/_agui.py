"""AG-UI (the Agent-User Interaction protocol, docs.ag-ui.com), the event stream
CopilotKit and other AG-UI clients consume.

``POST /api/agui`` takes a ``RunAgentInput`` (``threadId``, ``runId``, ``messages``,
``state``, ``tools``, ``context``, ``forwardedProps``) and answers Server-Sent Events,
one ``data: <event JSON>`` per AG-UI event, camelCase as the protocol's schemas say.
``threadId`` is the session id (created on first use); the last message, which must be
the user's, starts the turn (the runtime keeps the conversation). The agent gets
``{"run_id", "state", "context", "tools"}`` as :attr:`Turn.metadata` (those present)
and ``forwardedProps`` as :attr:`Turn.config`.

One turn maps to ``RUN_STARTED``; ``TEXT_MESSAGE_START``/``CONTENT``/``END`` per
assistant text; ``REASONING_START``, ``REASONING_MESSAGE_START``/``CONTENT``/``END``,
``REASONING_END`` per reasoning run; ``TOOL_CALL_START``/``ARGS``/``END`` and
``TOOL_CALL_RESULT`` per tool call; ``CUSTOM`` ``title`` when the agent names the
session; then ``RUN_FINISHED`` (outcome ``cancelled`` after a cancel) or ``RUN_ERROR``.
Message ids are ``<stream_id>:<seq>``, so a replay gives the same ids. A resumed turn's
``stream.resumed`` ends the open message and sends ``CUSTOM`` ``stream.resumed`` (value:
its data): messages whose id's seq is past ``disregard_after`` are superseded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from .. import _events as ev
from .._events import Event
from .._exceptions import SubscriberLagged
from ._chat import ChatProtocol, data_line
from ._errors import ApiError
from ._models import RunAgentInput

__all__ = ["AgUiEvents", "AgUiRun"]


class AgUiEvents:
    """Turns one stream's runtime events, in ``seq`` order from the first, into AG-UI
    events (dicts). Keeps which text or reasoning message is open.

    :param thread_id: the AG-UI thread (the session id).
    :param run_id: the client's run id, echoed in ``RUN_STARTED``/``RUN_FINISHED``.
    """

    def __init__(self, thread_id: str, run_id: str) -> None:
        self.thread_id = thread_id
        self.run_id = run_id
        self._open: tuple[str, str] | None = None  # ("text" | "reasoning", message id)

    def _close(self, out: list[dict[str, Any]]) -> None:
        if self._open is None:
            return
        kind, mid = self._open
        if kind == "text":
            out.append({"type": "TEXT_MESSAGE_END", "messageId": mid})
        else:
            out.append({"type": "REASONING_MESSAGE_END", "messageId": mid})
            out.append({"type": "REASONING_END", "messageId": mid})
        self._open = None

    def _open_message(self, kind: str, mid: str, out: list[dict[str, Any]]) -> None:
        self._close(out)
        self._open = (kind, mid)
        if kind == "text":
            out.append({"type": "TEXT_MESSAGE_START", "messageId": mid, "role": "assistant"})
        else:
            out.append({"type": "REASONING_START", "messageId": mid})
            out.append({"type": "REASONING_MESSAGE_START", "messageId": mid, "role": "reasoning"})

    def _delta(self, kind: str, event: Event, out: list[dict[str, Any]]) -> None:
        text = str(event.data.get("text", ""))
        if not text:
            return
        if self._open is None or self._open[0] != kind:
            self._open_message(kind, f"{event.stream_id}:{event.seq}", out)
        assert self._open is not None
        name = "TEXT_MESSAGE_CONTENT" if kind == "text" else "REASONING_MESSAGE_CONTENT"
        out.append({"type": name, "messageId": self._open[1], "delta": text})

    def feed(self, event: Event) -> list[dict[str, Any]]:
        """The AG-UI events for ``event`` (often none, e.g. for ``checkpoint``), each
        stamped with the event's time in milliseconds."""
        out: list[dict[str, Any]] = []
        t, d = event.type, event.data
        run = {"threadId": self.thread_id, "runId": self.run_id}
        if t == ev.STREAM_STARTED:
            out.append({"type": "RUN_STARTED", **run})
        elif t == ev.TOKEN:
            self._delta("text", event, out)
        elif t == ev.REASONING:
            self._delta("reasoning", event, out)
        elif t == ev.MESSAGE:
            self._message(event, out)
        elif t == ev.TOOL_STARTED:
            # The call belongs to the assistant text streamed just before it, as the
            # runtime's transcript puts the call in that message (``parentMessageId``).
            parent = self._open[1] if self._open is not None and self._open[0] == "text" else None
            self._close(out)
            call_id = str(d.get("call_id"))
            start = {
                "type": "TOOL_CALL_START",
                "toolCallId": call_id,
                "toolCallName": d.get("name"),
            }
            if parent is not None:
                start["parentMessageId"] = parent
            out.append(start)
            args = orjson.dumps(d.get("arguments") or {}, default=str).decode()
            out.append({"type": "TOOL_CALL_ARGS", "toolCallId": call_id, "delta": args})
            out.append({"type": "TOOL_CALL_END", "toolCallId": call_id})
        elif t == ev.TOOL_COMPLETED:
            out.append(_tool_result(event))
        elif t == ev.TITLE:
            out.append({"type": "CUSTOM", "name": "title", "value": d.get("title")})
        elif t == ev.STREAM_RESUMED:
            # The run goes on after its process stopped: the open text message ends,
            # and a client drops the text of the messages whose ids (from the seq of
            # their first token) are past ``disregard_after``: that draft is re-streamed.
            self._close(out)
            out.append({"type": "CUSTOM", "name": "stream.resumed", "value": dict(d)})
        elif t == ev.DONE:
            self._close(out)
            out.append({"type": "RUN_FINISHED", **run, "outcome": {"type": "success"}})
        elif t == ev.CANCELLED:
            self._close(out)
            out.append({"type": "RUN_FINISHED", **run, "outcome": {"type": "cancelled"}})
        elif t == ev.ERROR:
            self._close(out)
            message = str(d.get("message") or d.get("type") or "error")
            code = str(d.get("error_type") or d.get("type") or "error")
            out.append({"type": "RUN_ERROR", "message": message, "code": code})
        stamp = int(event.ts * 1000)
        for item in out:
            item["timestamp"] = stamp
        return out

    def _message(self, event: Event, out: list[dict[str, Any]]) -> None:
        """A finished message closes the streamed text it finishes; an assistant
        message added whole (never streamed) is sent as one text message."""
        if self._open is not None and self._open[0] == "text":
            self._close(out)
            return
        message = event.data.get("message")
        if not isinstance(message, dict) or message.get("role") != "assistant":
            return
        content = message.get("content")
        if isinstance(content, str) and content:
            mid = f"{event.stream_id}:{event.seq}"
            self._open_message("text", mid, out)
            out.append({"type": "TEXT_MESSAGE_CONTENT", "messageId": mid, "delta": content})
            self._close(out)


def _tool_result(event: Event) -> dict[str, Any]:
    d = event.data
    result = d.get("result")
    if d.get("error") is not None:
        content = f"error: {d['error']}"
    elif isinstance(result, str):
        content = result
    else:
        content = orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS, default=str).decode()
    return {
        "type": "TOOL_CALL_RESULT",
        "messageId": f"{event.stream_id}:{event.seq}",
        "toolCallId": str(d.get("call_id")),
        "content": content,
        "role": "tool",
    }


def _user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the last AG-UI message (of a non-empty list), which must be the
    user's: a string, or the ``text`` of its ``text`` parts.

    :raises ApiError: 400 ``invalid_body`` naming what is wrong.
    """
    last = messages[-1]
    if last.get("role") != "user":
        raise ApiError(
            400,
            "invalid_body",
            f"invalid messages: the last message must have role 'user', not {last.get('role')!r}",
        )
    content = last.get("content")
    if isinstance(content, list):
        content = "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    if not isinstance(content, str) or not content.strip():
        raise ApiError(
            400,
            "invalid_body",
            "invalid messages: the last user message has no non-whitespace text content",
        )
    return content


class AgUiRun(ChatProtocol):
    """The AG-UI endpoint over one runtime (its sessions are the threads)."""

    async def __call__(self, request: Request, body: RunAgentInput) -> Response:
        """``POST /api/agui`` (RunAgentInput) → the run as AG-UI events over SSE;
        409 ``session_busy`` while the thread has a live turn."""
        text = _user_text(body.messages)
        metadata: dict[str, Any] = {"run_id": body.runId}
        for key in ("state", "context", "tools"):
            value = getattr(body, key)
            if value not in (None, [], {}):
                metadata[key] = value
        session_id, stream_id = await self.start(
            request, body.threadId, text, metadata=metadata, config=body.forwardedProps
        )
        events_out = AgUiEvents(session_id, body.runId)

        def render(batch: Sequence[Event]) -> bytes:
            return b"".join([data_line(e) for event in batch for e in events_out.feed(event)])

        return self.stream(stream_id, render, _lagged)


def _lagged(exc: SubscriberLagged) -> bytes:
    return data_line({"type": "RUN_ERROR", "message": str(exc), "code": "subscriber_lagged"})
