"""A stand-in for a paid API: an OpenAI Chat Completions server for tests, on 127.0.0.1.

The real API costs money and needs the network, so the tests talk to this Starlette app
instead, run by a real uvicorn process. It is strict where the real API is strict, so a
client that passes here sends what the real API accepts:

- ``POST /v1/chat/completions`` takes only the request fields the API knows (others:
  400 ``Unrecognized request argument supplied``); every message only the keys its role
  may carry (``timestamp``, ``_partial``, ``name`` on a tool message …: 400); an assistant
  message with ``tool_calls`` must be followed directly by one tool message per call, and a
  tool message must answer such a call (400, with the API's wording); tool arguments must
  be strings; tool names must match ``^[a-zA-Z0-9_-]{1,64}$``.
- It answers with the next scripted response (``POST /_script`` with a JSON list; see
  :func:`script`), streamed as the API streams: ``data: <chunk JSON>`` server-sent events
  of ``chat.completion.chunk`` objects, the role first, content and reasoning deltas, tool
  calls whose ``arguments`` arrive split across chunks (``id`` and ``name`` only in the
  first delta of each index), a final chunk with ``finish_reason``, a usage chunk with
  empty ``choices`` when ``stream_options.include_usage`` is set, then ``data: [DONE]``.
  A response may instead be an error status (429 with ``retry-after``, 500) with the API's
  error body, or break the stream with a malformed chunk.
- ``GET /_requests`` returns every request body received (``{"status", "body"}``), and
  ``GET /_disconnects`` how many streamed responses the client closed before their end.

Run: ``python -m uvicorn chat_standin:app --app-dir tests/agents --port PORT``.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Json = dict[str, Any]

REQUEST_FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "stop",
        "seed",
        "user",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
        "response_format",
        "reasoning_effort",
        "metadata",
        "store",
    }
)
MESSAGE_KEYS = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "refusal", "audio", "tool_calls"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
}
TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


class Invalid(Exception):
    """A request the real API would refuse with 400; ``param`` names the field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def _check_tool_calls(i: int, calls: object) -> list[str]:
    if not isinstance(calls, list) or not calls:
        raise Invalid(f"Invalid 'messages[{i}].tool_calls': expected a non-empty array.")
    ids = []
    for j, call in enumerate(calls):
        where = f"messages[{i}].tool_calls[{j}]"
        if not isinstance(call, dict) or set(call) - {"id", "type", "function"}:
            raise Invalid(f"Invalid '{where}': unexpected keys.", where)
        function = call.get("function")
        if call.get("type") != "function" or not isinstance(call.get("id"), str):
            raise Invalid(f"Invalid '{where}': needs a string 'id' and type 'function'.", where)
        if not isinstance(function, dict) or set(function) != {"name", "arguments"}:
            raise Invalid(f"Invalid '{where}.function': needs 'name' and 'arguments'.", where)
        if not isinstance(function["arguments"], str):
            raise Invalid(
                f"Invalid type for '{where}.function.arguments': expected a string.", where
            )
        ids.append(call["id"])
    return ids


def _check_message(i: int, m: object) -> None:
    if not isinstance(m, dict) or m.get("role") not in MESSAGE_KEYS:
        raise Invalid(f"Invalid value for 'messages[{i}].role'.", f"messages[{i}].role")
    extra = sorted(set(m) - MESSAGE_KEYS[m["role"]])
    if extra:
        raise Invalid(
            f"Additional properties are not allowed ('{extra[0]}' was unexpected) - 'messages.{i}'",
            f"messages[{i}]",
        )
    content = m.get("content")
    if m["role"] == "assistant":
        if content is None and not m.get("tool_calls"):
            raise Invalid(
                f"Invalid value for 'messages[{i}].content': expected a string, got null.",
                f"messages[{i}].content",
            )
    elif not isinstance(content, str | list):
        raise Invalid(
            f"Invalid type for 'messages[{i}].content': expected a string or an array.",
            f"messages[{i}].content",
        )
    if m["role"] == "tool" and not isinstance(m.get("tool_call_id"), str):
        raise Invalid(f"Missing required parameter: 'messages[{i}].tool_call_id'.")


def validate_messages(messages: object) -> None:
    """Refuse ``messages`` as the Chat Completions API does.

    :raises Invalid: with the API's wording for the first problem.
    """
    if not isinstance(messages, list) or not messages:
        raise Invalid("'messages' must be a non-empty array.", "messages")
    waiting: list[str] = []  # call ids of the last assistant message not yet answered
    for i, m in enumerate(messages):
        _check_message(i, m)
        role = m["role"]
        if role == "tool":
            if m["tool_call_id"] not in waiting:
                raise Invalid(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    f"messages.[{i}].role",
                )
            waiting.remove(m["tool_call_id"])
            continue
        if waiting:
            raise Invalid(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(waiting)}",
                "messages",
            )
        if role == "assistant" and m.get("tool_calls") is not None:
            waiting = _check_tool_calls(i, m["tool_calls"])
    if waiting:
        raise Invalid(
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not have "
            f"response messages: {', '.join(waiting)}",
            "messages",
        )


def validate_request(body: object) -> None:
    """Refuse a request body as the API does (fields, tools, then messages).

    :raises Invalid: for the first problem.
    """
    if not isinstance(body, dict):
        raise Invalid("We could not parse the JSON body of your request.")
    for key in body:
        if key not in REQUEST_FIELDS:
            raise Invalid(f"Unrecognized request argument supplied: {key}", key)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise Invalid("you must provide a model parameter", "model")
    if "stream_options" in body and not body.get("stream"):
        raise Invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    for j, tool in enumerate(body.get("tools") or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(function, dict):
            raise Invalid(f"Invalid 'tools[{j}]': expected a function tool.", f"tools[{j}]")
        if not TOOL_NAME.fullmatch(str(function.get("name"))):
            raise Invalid(
                f"Invalid 'tools[{j}].function.name': string does not match pattern.",
                f"tools[{j}].function.name",
            )
    validate_messages(body.get("messages"))


# -- the server -------------------------------------------------------------------------

_script: list[Json] = []
_requests: list[Json] = []
_disconnects: list[int] = [0]


def _error(status: int, message: str, kind: str, code: str | None, **headers: str) -> Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _chunk(cid: str, model: str, delta: Json | None, finish: str | None = None) -> Json:
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    )
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_standin",
        "choices": choices,
    }


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _chunks(spec: Json, model: str, include_usage: bool) -> list[Json]:
    """The chunk objects of one scripted answer, in order."""
    cid = "chatcmpl-" + str(len(_requests))
    size = int(spec.get("split", 4))
    out = [_chunk(cid, model, {"role": "assistant", "content": ""})]
    for piece in _pieces(spec.get("reasoning", ""), size) if spec.get("reasoning") else []:
        out.append(_chunk(cid, model, {spec.get("reasoning_key", "reasoning_content"): piece}))
    for piece in _pieces(spec.get("content", ""), size) if spec.get("content") else []:
        out.append(_chunk(cid, model, {"content": piece}))
    calls = spec.get("tool_calls") or []
    for index, call in enumerate(calls):
        first = {"index": index, "id": call["id"], "type": "function"}
        first["function"] = {"name": call["name"], "arguments": ""}
        out.append(_chunk(cid, model, {"tool_calls": [first]}))
    # the arguments of the calls arrive interleaved, a few characters at a time
    parts = [_pieces(call["arguments"], size) for call in calls]
    for k in range(max((len(p) for p in parts), default=0)):
        for index, pieces in enumerate(parts):
            if k < len(pieces):
                delta = {"index": index, "function": {"arguments": pieces[k]}}
                out.append(_chunk(cid, model, {"tool_calls": [delta]}))
    finish = spec.get("finish_reason") or ("tool_calls" if calls else "stop")
    out.append(_chunk(cid, model, {}, finish))
    if include_usage:
        for chunk in out:
            chunk["usage"] = None
        usage = _chunk(cid, model, None)
        usage["usage"] = {
            "prompt_tokens": int(spec.get("prompt_tokens", 11)),
            "completion_tokens": len(out),
            "total_tokens": int(spec.get("prompt_tokens", 11)) + len(out),
        }
        out.append(usage)
    return out


async def _stream(spec: Json, model: str, include_usage: bool) -> AsyncIterator[bytes]:
    delay = float(spec.get("delay", 0))
    malformed_after = spec.get("malformed_after")
    finished = False
    try:
        for n, chunk in enumerate(_chunks(spec, model, include_usage)):
            if malformed_after is not None and n == malformed_after:
                yield b'data: {"id": "chatcmpl-broken", "choices": [{"delta": {"content\n\n'
                finished = True
                return
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            if delay:
                await anyio.sleep(delay)
        yield b"data: [DONE]\n\n"
        finished = True
    finally:
        if not finished:
            _disconnects[0] += 1


async def completions(request: Request) -> Response:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        body = None
    record: Json = {"status": 200, "body": body}
    _requests.append(record)
    try:
        validate_request(body)
    except Invalid as exc:
        record["status"] = 400
        return JSONResponse(
            {
                "error": {
                    "message": str(exc),
                    "type": "invalid_request_error",
                    "param": exc.param,
                    "code": None,
                }
            },
            status_code=400,
        )
    spec = _script.pop(0) if _script else {"content": "(the script is empty)"}
    status = int(spec.get("status", 200))
    record["status"] = status
    if status == 429:
        return _error(
            429,
            "Rate limit reached for requests. Please try again in 20ms.",
            "requests",
            "rate_limit_exceeded",
            **{"retry-after-ms": "20"},
        )
    if status >= 500:
        return _error(
            status,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        )
    assert isinstance(body, dict)
    if not body.get("stream"):
        return _error(400, "this stand-in only streams", "invalid_request_error", None)
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return StreamingResponse(
        _stream(spec, body["model"], include_usage), media_type="text/event-stream"
    )


async def script(request: Request) -> Response:
    """``POST /_script`` ``[response, ...]``: the answers to the next requests, each
    ``{"content", "reasoning", "reasoning_key" (``reasoning_content`` as vLLM and
    DeepSeek send it, or ``reasoning`` as Ollama does), "tool_calls": [{"id", "name",
    "arguments"}], "split",
    "delay", "finish_reason", "prompt_tokens", "malformed_after"}`` or ``{"status": 429}``
    / ``{"status": 500}``. Replaces the script and clears the request log."""
    _script[:] = orjson.loads(await request.body())
    _requests.clear()
    _disconnects[0] = 0
    return JSONResponse({"queued": len(_script)})


async def requests_log(request: Request) -> Response:
    return JSONResponse(_requests)


async def disconnects(request: Request) -> Response:
    return JSONResponse({"disconnects": _disconnects[0], "left": len(_script)})


app = Starlette(
    routes=[
        Route("/v1/chat/completions", completions, methods=["POST"]),
        Route("/_script", script, methods=["POST"]),
        Route("/_requests", requests_log, methods=["GET"]),
        Route("/_disconnects", disconnects, methods=["GET"]),
    ]
)
