"""The stored transcript as a model reads it: OpenAI Chat Completions ``messages``.

Stored messages carry private keys (``timestamp``, ``_partial``, ``_error``,
``_recovered``, ``type`` …) and markers that only the runtime writes (a cancelled,
failed or interrupted turn). The Chat Completions API refuses unknown keys, and
requires every assistant message with ``tool_calls`` to be followed directly by one
``tool`` message per call. :func:`model_messages` turns the one into the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = [
    "CANCELLED_NOTE",
    "ERROR_NOTE",
    "INTERRUPTED_NOTE",
    "MISSING_RESULT_NOTE",
    "PARTIAL_NOTE",
    "model_messages",
]

#: Appended to an answer that was cut off (a ``_partial`` message).
PARTIAL_NOTE: Final = "[This answer was cut off before it was finished.]"
#: A turn the user cancelled.
CANCELLED_NOTE: Final = "[The user cancelled this turn.]"
#: A turn that failed; ``{error}`` is the error text.
ERROR_NOTE: Final = "[This turn failed with an error: {error}]"
#: A turn whose process stopped.
INTERRUPTED_NOTE: Final = "[This turn was interrupted because the process running it stopped.]"
#: The result given to a tool call that has none in the transcript.
MISSING_RESULT_NOTE: Final = "[No result: the tool call did not complete.]"

# The keys each role may carry in a Chat Completions request.
_KEYS: Final[dict[str, frozenset[str]]] = {
    "system": frozenset({"role", "content", "name"}),
    "developer": frozenset({"role", "content", "name"}),
    "user": frozenset({"role", "content", "name"}),
    "assistant": frozenset({"role", "content", "name", "refusal", "audio", "tool_calls"}),
    "tool": frozenset({"role", "content", "tool_call_id"}),
}


def _note(message: Mapping[str, Any]) -> str | None:
    """The note for a runtime marker, or ``None`` for an ordinary message."""
    kind = message.get("type")
    if kind == "interrupted":
        return INTERRUPTED_NOTE
    if kind == "cancelled" or message.get("_cancelled"):
        return CANCELLED_NOTE
    if kind == "error":
        error = str(message.get("content") or "").removeprefix("Error: ")
        return ERROR_NOTE.format(error=error or message.get("error_type", "unknown"))
    return None


def _clean(message: Mapping[str, Any]) -> dict[str, Any]:
    keys = _KEYS[message["role"]]
    return {k: v for k, v in message.items() if k in keys}


def _tool_call(spec: Mapping[str, Any]) -> dict[str, Any]:
    function = spec.get("function") or {}
    arguments = function.get("arguments")
    return {
        "id": spec.get("id"),
        "type": "function",
        "function": {
            "name": function.get("name"),
            "arguments": arguments if isinstance(arguments, str) else "{}",
        },
    }


def _add_text(out: list[dict[str, Any]], text: str) -> None:
    """Add assistant text, joined to the previous assistant message if it has no calls
    (some chat templates refuse two assistant messages in a row)."""
    last = out[-1] if out else None
    if last is not None and last["role"] == "assistant" and not last.get("tool_calls"):
        content = last.get("content")
        last["content"] = f"{content}\n\n{text}" if isinstance(content, str) and content else text
    else:
        out.append({"role": "assistant", "content": text})


def model_messages(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Stored messages as valid OpenAI Chat Completions ``messages`` (new dicts; the
    input is not changed).

    - Keys a role may not carry are dropped (``timestamp``, ``_partial``, ``_error``,
      ``_recovered``, ``type``, ``name`` on tool messages …); messages of other roles
      and assistant messages with neither text nor calls are left out.
    - Markers become short assistant notes: a cancelled turn :data:`CANCELLED_NOTE`, a
      failed one :data:`ERROR_NOTE`, an interrupted one :data:`INTERRUPTED_NOTE`;
      partial text is kept and followed by :data:`PARTIAL_NOTE`. A note follows the
      assistant text before it in the same message.
    - Every assistant message with ``tool_calls`` is followed by one tool message per
      call, in the order of the calls; a call without a result gets
      :data:`MISSING_RESULT_NOTE`; tool messages that answer no call are left out.
    """
    items = [m for m in messages if isinstance(m, Mapping) and m.get("role") in _KEYS]
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(items):
        message = items[i]
        i += 1
        role = message["role"]
        note = _note(message) if role == "assistant" else None
        if note is not None:
            _add_text(out, note)
            continue
        if role == "tool":
            continue  # answers no call that came before it (paired ones are taken below)
        clean = _clean(message)
        if role == "assistant" and message.get("tool_calls"):
            clean["tool_calls"] = [_tool_call(spec) for spec in message["tool_calls"]]
            results: dict[str, Mapping[str, Any]] = {}
            while i < len(items) and items[i]["role"] == "tool":
                results.setdefault(str(items[i].get("tool_call_id")), items[i])
                i += 1
            out.append(clean)
            for spec in clean["tool_calls"]:
                result = results.get(str(spec["id"]))
                content = MISSING_RESULT_NOTE if result is None else result.get("content")
                out.append({"role": "tool", "tool_call_id": spec["id"], "content": content or ""})
            continue
        if role == "assistant":
            content = clean.get("content")
            if message.get("_partial"):
                _add_text(out, f"{content}\n\n{PARTIAL_NOTE}" if content else PARTIAL_NOTE)
                continue
            if not content and not clean.get("refusal") and not clean.get("audio"):
                continue
        out.append(clean)
    return out
