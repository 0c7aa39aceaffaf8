"""What every adapter shares: tool calls keyed by the framework's ids, usage, history.

Nothing here imports a framework.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from .._runner import ToolCall, Turn

__all__ = [
    "ToolCalls",
    "history_and_prompt",
    "json_ready",
    "report_usage",
    "text_of",
]


def history_and_prompt(turn: Turn) -> tuple[list[dict[str, Any]], str | None]:
    """(history, prompt) for a framework run. On a first run: ``model_messages()``
    without this turn's user message at its end, and that message as the prompt. On a
    resumed turn that got past its prompt (tool calls and results of the interrupted
    attempt follow it): the whole durable history and no prompt, so the framework
    continues the conversation instead of answering the prompt a second time."""
    messages = turn.model_messages()
    if messages:
        last = messages[-1]
        if last.get("role") == "user" and text_of(last.get("content")) == turn.user_message:
            return messages[:-1], turn.user_message
    if turn.resumed:
        return messages, None
    return messages, turn.user_message


def text_of(content: object) -> str:
    """The text of a chat-completions ``content``: a string, ``None``, or a list of
    parts of which the ``{"type": "text", "text": ...}`` ones are joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return str(content)


def json_ready(value: object, fallback: Callable[[], str]) -> Any:
    """``value`` if JSON can carry it as it is (orjson's rules), else ``fallback()``:
    a tool's result goes into ``tool.completed`` and the transcript."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        orjson.dumps(value)
    except TypeError:
        return fallback()
    return value


async def report_usage(
    turn: Turn, input_tokens: int | None, output_tokens: int | None, **more: int | None
) -> None:
    """Emit ``usage`` for one model call with OpenAI's names (``prompt_tokens``,
    ``completion_tokens``, ``total_tokens``) plus ``more`` counts; nothing when the
    framework reported no counts at all."""
    counts = {k: v for k, v in more.items() if isinstance(v, int) and v}
    if not input_tokens and not output_tokens and not counts:
        return
    prompt, completion = input_tokens or 0, output_tokens or 0
    await turn.usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        **counts,
    )


class ToolCalls:
    """The tool calls of one turn, keyed by the framework's call id.

    ``start`` opens a runtime tool call that keeps the model's id (a model that repeats
    an id within the turn gets a fresh one for the repeat: Chat Completions needs them
    unique); ``finish``/``fail`` complete it, starting it first if the framework
    reported a result without a call. Calls started while others still run form one
    assistant message, as the runtime groups them.
    """

    def __init__(self, turn: Turn) -> None:
        self._turn = turn
        self._calls: dict[str, ToolCall] = {}

    def known(self, call_id: str) -> bool:
        """True once a call with the framework's ``call_id`` was started."""
        return call_id in self._calls

    def running(self, call_id: str) -> bool:
        """True while the call with the framework's ``call_id`` has no result."""
        call = self._calls.get(call_id)
        return call is not None and not call.done

    async def start(
        self, call_id: str, name: str, arguments: Mapping[str, Any] | str | None
    ) -> None:
        """Start the call unless it is already running."""
        if self.running(call_id):
            return
        model_id = call_id if call_id and call_id not in self._calls else None
        self._calls[call_id] = await self._turn.start_tool(name, arguments, call_id=model_id)

    async def finish(self, call_id: str, name: str, result: Any) -> None:
        """Complete the call with ``result``."""
        call = await self._running(call_id, name)
        await call.finish(result)

    async def fail(self, call_id: str, name: str, error: str) -> None:
        """Complete the call as failed with ``error`` (the text the model reads)."""
        call = await self._running(call_id, name)
        await call.fail(error)

    async def _running(self, call_id: str, name: str) -> ToolCall:
        if not self.running(call_id):
            await self.start(call_id, name, None)
        return self._calls[call_id]
