"""The Vercel AI SDK's UI message stream protocol (v1), so that ``useChat`` and the
SDK's ``DefaultChatTransport`` talk to the runtime as they would to a Next.js route.

Routes (the SDK's defaults for ``api: "/api/chat"``)::

    POST /api/chat                 {id, messages, trigger, metadata?, config?} -> SSE
    GET  /api/chat/{id}/stream     the active turn, replayed from its start; 204 if none
    POST /api/chat/{id}/stop       cancel the active turn (``stop()`` only drops the
                                   connection, which never cancels a turn)
    GET  /api/chat/{id}            {id, messages}: the stored transcript as UI messages

The chat ``id`` is the session id (created on first use). The runtime keeps the
conversation, so only the last user message of ``messages`` is read, and, for a
regenerate (``trigger: "regenerate-message"``) or an edit (``"submit-message"`` with a
``messageId``: the SDK's ``sendMessage({text, messageId})``), how many UI messages come
before it: the SDK drops the messages after the one it regenerates or edits, and the
stored chat is rewound to the same point (``Runtime.start_turn(rewind_to=...)``), for
good, so a reload shows what the client shows.

Wire format (ai-sdk.dev, "Stream Protocols", UI message stream): header
``x-vercel-ai-ui-message-stream: v1``; each chunk is ``data: <json>`` and the stream
ends with ``data: [DONE]``. A turn maps to one assistant message: ``start``, then
``text-start``/``text-delta``/``text-end`` and ``reasoning-start``/``-delta``/``-end``
parts (ids derived from the event ``seq``, so a replay gives the same ids),
``tool-input-available`` and ``tool-output-available``/``tool-output-error`` for each
tool call (``dynamic: true``: the tools run on the server and the client declares
none), then ``finish``, ``abort`` (cancelled) or ``error`` then ``finish``. A resumed
turn's ``stream.resumed`` ends the open part and sends ``data-stream-resumed``
``{attempt, lastDurableSeq, disregardAfter}``: parts ``text-<seq>``/``reasoning-<seq>``
with ``seq > disregardAfter`` before it are superseded (their text is streamed again).
The resume route replays the whole turn, which is what the SDK's
``DefaultChatTransport`` expects (``resumeStreamIsReplay``, default true).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from .. import _events as ev
from .._events import Event
from .._exceptions import HistoryMismatch, SubscriberLagged
from .._session import Message
from ._chat import ChatProtocol, data_line
from ._errors import ApiError, JSONResponse
from ._models import ChatRequest
from ._params import session_id_param

__all__ = ["AiSdkChat", "UIMessageChunks", "rewind_point", "ui_messages"]

#: The response header that marks a UI message stream.
STREAM_HEADERS = {"x-vercel-ai-ui-message-stream": "v1", "x-accel-buffering": "no"}

_DONE = b"data: [DONE]\n\n"


class UIMessageChunks:
    """Turns one stream's runtime events, in ``seq`` order from the first, into UI
    message stream chunks (dicts). Keeps which text or reasoning part is open."""

    def __init__(self) -> None:
        self._open: tuple[str, str] | None = None  # ("text" | "reasoning", part id)

    def _close(self, out: list[dict[str, Any]]) -> None:
        if self._open is not None:
            kind, part_id = self._open
            out.append({"type": f"{kind}-end", "id": part_id})
            self._open = None

    def _delta(self, kind: str, seq: int, text: str, out: list[dict[str, Any]]) -> None:
        if self._open is None or self._open[0] != kind:
            self._close(out)
            self._open = (kind, f"{kind}-{seq}")
            out.append({"type": f"{kind}-start", "id": self._open[1]})
        out.append({"type": f"{kind}-delta", "id": self._open[1], "delta": text})

    def feed(self, event: Event) -> list[dict[str, Any]]:
        """The chunks for ``event`` (often none, e.g. for ``checkpoint``)."""
        out: list[dict[str, Any]] = []
        t, d = event.type, event.data
        if t == ev.STREAM_STARTED:
            out.append({"type": "start", "messageId": event.stream_id})
        elif t == ev.TOKEN:
            self._delta("text", event.seq, str(d.get("text", "")), out)
        elif t == ev.REASONING:
            self._delta("reasoning", event.seq, str(d.get("text", "")), out)
        elif t == ev.MESSAGE:
            self._message(event, out)
        elif t == ev.TOOL_STARTED:
            self._close(out)
            out.append(
                {
                    "type": "tool-input-available",
                    "toolCallId": d.get("call_id"),
                    "toolName": d.get("name"),
                    "input": d.get("arguments"),
                    "dynamic": True,
                }
            )
        elif t == ev.TOOL_COMPLETED:
            out.append(_tool_output(d))
        elif t == ev.TITLE:
            out.append({"type": "data-title", "data": {"title": d.get("title")}, "transient": True})
        elif t == ev.STREAM_RESUMED:
            # The turn goes on after its process stopped. The UI message stream cannot
            # take a part back: the open part ends, and this data part tells a client
            # which parts to drop, those whose ids (``text-<seq>``) are past
            # ``disregardAfter``: that draft is streamed again as new parts.
            self._close(out)
            data = {
                "attempt": d.get("attempt"),
                "lastDurableSeq": d.get("last_durable_seq"),
                "disregardAfter": d.get("disregard_after"),
            }
            out.append({"type": "data-stream-resumed", "data": data})
        elif t == ev.USAGE:
            out.append({"type": "message-metadata", "messageMetadata": {"usage": d}})
        elif t == ev.DONE:
            self._close(out)
            out.append({"type": "finish", "finishReason": "stop"})
        elif t == ev.CANCELLED:
            self._close(out)
            out.append({"type": "abort", "reason": str(d.get("reason", "cancelled"))})
        elif t == ev.ERROR:
            self._close(out)
            out.append({"type": "error", "errorText": _error_text(d)})
            out.append({"type": "finish", "finishReason": "error"})
        return out

    def _message(self, event: Event, out: list[dict[str, Any]]) -> None:
        """A finished message: closes the streamed text it finishes, or, for an
        assistant message added whole (never streamed), sends its text as one part."""
        if self._open is not None and self._open[0] == "text":
            self._close(out)
            return
        message = event.data.get("message")
        if not isinstance(message, dict) or message.get("role") != "assistant":
            return
        content = message.get("content")
        if isinstance(content, str) and content:
            self._close(out)
            part_id = f"text-{event.seq}"
            out.append({"type": "text-start", "id": part_id})
            out.append({"type": "text-delta", "id": part_id, "delta": content})
            out.append({"type": "text-end", "id": part_id})


def _tool_output(d: dict[str, Any]) -> dict[str, Any]:
    if d.get("error") is not None:
        return {
            "type": "tool-output-error",
            "toolCallId": d.get("call_id"),
            "errorText": str(d["error"]),
            "dynamic": True,
        }
    return {
        "type": "tool-output-available",
        "toolCallId": d.get("call_id"),
        "output": d.get("result"),
        "dynamic": True,
    }


def _error_text(d: dict[str, Any]) -> str:
    kind = d.get("error_type") or d.get("type") or "error"
    message = d.get("message")
    return f"{kind}: {message}" if message else str(kind)


# -- stored messages as UI messages -------------------------------------------------------


def _tool_output_value(content: object) -> object:
    if isinstance(content, str):
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            return content
    return content


def _assistant_parts(messages: list[Message]) -> list[dict[str, Any]]:
    """The parts of one assistant UI message from the stored assistant and tool
    messages of one turn."""
    parts: list[dict[str, Any]] = []
    calls: dict[str, dict[str, Any]] = {}
    for m in messages:
        if m.get("role") == "tool":
            part = calls.get(str(m.get("tool_call_id")))
            if part is None:
                continue
            if m.get("_error"):
                part.update(state="output-error", errorText=str(m.get("content")))
            else:
                part.update(state="output-available", output=_tool_output_value(m.get("content")))
            continue
        content = m.get("content")
        if isinstance(content, str) and content:
            parts.append({"type": "text", "text": content, "state": "done"})
        for call in m.get("tool_calls") or ():
            fn = call.get("function") or {}
            part = {
                "type": "dynamic-tool",
                "toolName": fn.get("name"),
                "toolCallId": call.get("id"),
                "state": "input-available",
                "input": _tool_output_value(fn.get("arguments")),
            }
            calls[str(call.get("id"))] = part
            parts.append(part)
    return parts


def ui_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Stored chat-completions messages as AI SDK UI messages ``{id, role, parts}``:
    each user (or system) message becomes one message with a text part; the assistant
    and tool messages between two user messages become one assistant message whose
    parts are its texts and its tool calls (``dynamic-tool``, with output or error).
    Ids are ``m<index>`` of the first stored message they come from."""
    out: list[dict[str, Any]] = []
    run: list[Message] = []
    run_start = 0

    def flush() -> None:
        parts = _assistant_parts(run)
        if parts:
            out.append({"id": f"m{run_start}", "role": "assistant", "parts": parts})
        run.clear()

    for i, m in enumerate(messages):
        role = m.get("role")
        if role in ("user", "system"):
            flush()
            text = m.get("content")
            out.append(
                {
                    "id": f"m{i}",
                    "role": role,
                    "parts": [{"type": "text", "text": text if isinstance(text, str) else ""}],
                }
            )
        else:
            if not run:
                run_start = i
            run.append(m)
    flush()
    return out


# -- the endpoints --------------------------------------------------------------------------


def _last_user_text(messages: list[dict[str, Any]]) -> tuple[str, dict[str, Any] | None]:
    """The text of the last UI message (of a non-empty list), which must be the
    user's, and its metadata.

    :raises ApiError: 400 ``invalid_body`` naming what is wrong.
    """
    last = messages[-1]
    if last.get("role") != "user":
        raise ApiError(
            400,
            "invalid_body",
            "invalid messages: the last message must be a UI message with role 'user', "
            f"not {last.get('role')!r}",
        )
    parts = last.get("parts")
    if not isinstance(parts, list):
        raise ApiError(400, "invalid_body", "invalid messages: the last message has no 'parts'")
    text = "".join(
        str(p.get("text", ""))
        for p in parts
        if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
    )
    if not text.strip():
        raise ApiError(
            400,
            "invalid_body",
            "invalid messages: the last user message has no text part with non-whitespace text",
        )
    meta = last.get("metadata")
    return text, meta if isinstance(meta, dict) else None


def rewind_point(session_id: str, messages: list[Message], keep: int) -> int | None:
    """Where a regenerate or an edit rewinds the stored ``messages`` to when the
    client keeps ``keep`` UI messages before the user message it sends: the index of
    the first stored message of UI message number ``keep`` (:func:`ui_messages`), which
    must be a user message; ``None`` when the stored chat has no more than ``keep`` UI
    messages (nothing to drop: e.g. the regenerated answer was never stored).

    :raises HistoryMismatch: if UI message number ``keep`` is not a user message (the
        client's copy does not line up with the stored chat; it should reload it).
    """
    ui = ui_messages(messages)
    if keep >= len(ui):
        return None
    if ui[keep]["role"] != "user":
        raise HistoryMismatch(
            session_id,
            f"a regenerate or edit keeping {keep} UI messages must replace a user "
            f"message, but the chat's UI message {keep} is an {ui[keep]['role']} "
            "message: the client's copy of the chat is out of date; reload it",
        )
    return int(ui[keep]["id"][1:])  # "m<index>" of its stored message


class AiSdkChat(ChatProtocol):
    """The AI SDK endpoints over one runtime (its sessions are the chats)."""

    async def send(self, request: Request, body: ChatRequest) -> Response:
        """``POST /api/chat``: start a turn with the last user message and stream it;
        a regenerate or an edit first rewinds the stored chat to the client's messages
        before that one (:func:`rewind_point`).

        409 ``session_busy`` while the chat has a live turn; 409 ``history_mismatch``
        when a regenerate or edit does not line up with the stored chat."""
        text, message_meta = _last_user_text(body.messages)
        rewind = None
        if body.trigger == "regenerate-message" or body.messageId is not None:
            keep = len(body.messages) - 1

            def rewind(session_id: str, messages: list[Message]) -> int | None:
                return rewind_point(session_id, messages, keep)

        _, stream_id = await self.start(
            request,
            body.id,
            text,
            metadata=body.metadata or message_meta,
            config=body.config,
            rewind=rewind,
        )
        return self._stream(stream_id)

    async def resume(self, request: Request) -> Response:
        """``GET /api/chat/{id}/stream``: the chat's active turn from its start, or 204
        when it has none (what ``useChat({resume: true})`` calls on mount)."""
        session_id = session_id_param(request)
        if not await self.runtime.store.exists(session_id):
            return Response(status_code=204)
        status = await self.runtime.session_status(session_id)
        stream_id = status["active_stream_id"]
        if stream_id is None:
            return Response(status_code=204)
        return self._stream(stream_id)

    async def stop(self, request: Request) -> Response:
        """``POST /api/chat/{id}/stop`` → ``{id, stream_id, cancelled}``; returns once
        the cancelled turn's partial output is saved."""
        session_id = session_id_param(request)
        status = await self.runtime.session_status(session_id)
        stream_id = status["active_stream_id"]
        cancelled = stream_id is not None and await self.runtime.cancel(stream_id)
        return JSONResponse({"id": session_id, "stream_id": stream_id, "cancelled": cancelled})

    async def messages(self, request: Request) -> Response:
        """``GET /api/chat/{id}`` → ``{id, messages}`` (UI messages), to restore a chat."""
        session = await self.runtime.get_session(session_id_param(request))
        return JSONResponse({"id": session.session_id, "messages": ui_messages(session.messages)})

    def _stream(self, stream_id: str) -> Response:
        chunks = UIMessageChunks()

        def render(batch: Sequence[Event]) -> bytes:
            out = [data_line(c) for e in batch for c in chunks.feed(e)]
            if batch[-1].type == ev.STREAM_END:
                out.append(_DONE)
            return b"".join(out)

        return self.stream(stream_id, render, _lagged, STREAM_HEADERS)


def _lagged(exc: SubscriberLagged) -> bytes:
    # The client may call the resume route, which replays the turn from the store.
    return data_line({"type": "error", "errorText": f"subscriber lagged: {exc}"})
