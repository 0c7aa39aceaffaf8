"""Chat-completions messages ↔ Responses API items, as the OpenAI Agents SDK uses them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agents.exceptions import UserError
from agents.items import TResponseInputItem
from agents.models.chatcmpl_converter import Converter

from ._common import text_of

__all__ = ["chat_message", "is_assistant_side", "to_input_items"]

_OWN_MESSAGE_ROLES = frozenset({"user", "system", "developer"})


def is_assistant_side(item: Mapping[str, Any]) -> bool:
    """True for an item the model produced (an assistant message, a function or other
    tool call, reasoning); False for a user/system message or a tool's output."""
    if item.get("role") in _OWN_MESSAGE_ROLES:
        return False
    return not str(item.get("type", "")).endswith("_output")


def chat_message(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One chat-completions message for ``items``: a single user/system message or tool
    output, or a run of assistant-side items (their text joined, their calls as one
    ``tool_calls`` list), converted by the SDK's own ``Converter``. An item Chat
    Completions cannot carry (a computer call, say) adds nothing but is kept by the
    caller beside the message."""
    converted: list[Mapping[str, Any]] = []
    for item in items:
        try:
            converted.extend(Converter.items_to_messages([item]))  # type: ignore[list-item]
        except UserError:
            continue
    first = items[0]
    if not is_assistant_side(first):
        if converted:
            return dict(converted[0])
        return {"role": "tool", "tool_call_id": str(first.get("call_id") or ""), "content": ""}
    texts = [text_of(m.get("content")) for m in converted if m.get("content")]
    calls = [call for m in converted for call in m.get("tool_calls") or ()]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = [dict(call) for call in calls]
    return message


def to_input_items(messages: Iterable[Mapping[str, Any]]) -> list[TResponseInputItem]:
    """OpenAI chat-completions messages as Responses API input items (what the SDK's
    ``Runner`` takes): ``system``/``developer``/``user``/``assistant`` text as
    ``{"role", "content"}`` messages, each ``tool_calls`` entry as a ``function_call``
    item, each ``tool`` message as a ``function_call_output`` item (ids kept).

    :raises ValueError: for a message whose ``role`` is none of these.
    """
    items: list[TResponseInputItem] = []
    for message in messages:
        role = message.get("role")
        content = text_of(message.get("content"))
        if role == "tool":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": str(message.get("tool_call_id") or ""),
                    "output": content,
                }
            )
        elif role in ("system", "developer", "user"):
            items.append({"role": role, "content": content})
        elif role == "assistant":
            if content:
                items.append({"role": "assistant", "content": content})
            for spec in message.get("tool_calls") or ():
                function = spec.get("function") or {}
                items.append(
                    {
                        "type": "function_call",
                        "call_id": str(spec.get("id") or ""),
                        "name": str(function.get("name") or ""),
                        "arguments": str(function.get("arguments") or "{}"),
                    }
                )
        else:
            raise ValueError(
                f"invalid message role {role!r}: must be system, developer, user, assistant or tool"
            )
    return items
