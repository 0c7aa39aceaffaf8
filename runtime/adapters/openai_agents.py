"""Run an OpenAI Agents SDK agent as a runtime agent (extra ``openai-agents``).

::

    from agents import Agent
    from runtime.adapters.openai_agents import agent as runtime_agent

    assistant = Agent(name="assistant", instructions="Be brief.", tools=[search])
    agent = runtime_agent(assistant)          # runtime run app.py:agent "..."

Each turn calls ``Runner.run_streamed(agent, input=history + [the user's message])``
where the history is ``turn.model_messages()`` converted to Responses input items by
:func:`to_input_items`, and maps ``stream_events()``:

====================================================  ===================================
OpenAI Agents SDK stream event                        runtime
====================================================  ===================================
raw ``response.output_text.delta`` (and refusals)     ``token``
raw ``response.reasoning_summary_text.delta``,        ``reasoning``
``response.reasoning_text.delta``
raw ``response.completed``: ``response.usage``        ``usage``
item ``tool_called``, ``handoff_requested``           ``tool.started`` (the model's call id)
item ``tool_output``, ``handoff_occured``             ``tool.completed``
item ``message_output_created`` never streamed        ``token`` with its text
====================================================  ===================================

Text the model wrote before its tool calls goes into the assistant message that carries
them (as Chat Completions does); the run's last text is finished into one assistant
message. When the turn is cancelled the SDK's run is cancelled too.

:class:`RuntimeSession` is the other way in: the SDK's ``Session`` protocol backed by a
runtime :class:`~runtime.Store`, for code that calls ``Runner.run(..., session=...)``
itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

try:
    from agents import Agent as SdkAgent
    from agents import Runner
    from agents.items import ItemHelpers, MessageOutputItem
    from agents.stream_events import RawResponsesStreamEvent, RunItemStreamEvent
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "runtime.adapters.openai_agents needs openai-agents: pip install 'runtime[openai-agents]'"
    ) from exc

from .._runner import Agent, Turn
from ._common import ToolCalls, history_and_prompt, json_ready, report_usage
from ._openai_agents_session import RuntimeSession
from ._openai_items import to_input_items

__all__ = ["RuntimeSession", "agent", "to_input_items"]

_TEXT_DELTAS = frozenset({"response.output_text.delta", "response.refusal.delta"})
_REASONING_DELTAS = frozenset(
    {"response.reasoning_summary_text.delta", "response.reasoning_text.delta"}
)


def agent(sdk_agent: SdkAgent[Any], **run_options: Any) -> Agent:
    """A runtime agent that runs ``sdk_agent`` with ``Runner.run_streamed`` each turn.

    :param sdk_agent: an ``agents.Agent``.
    :param run_options: passed to every ``Runner.run_streamed`` call (``context=``,
        ``max_turns=``, ``run_config=``, ``hooks=``, ...); not ``input`` or ``session``:
        the runtime's session supplies the conversation.
    :raises TypeError: if ``sdk_agent`` is not an ``agents.Agent``, or ``run_options``
        names ``input``, ``session`` or ``starting_agent``.
    """
    if not isinstance(sdk_agent, SdkAgent):
        raise TypeError(f"invalid agent {sdk_agent!r}: must be an OpenAI Agents SDK agents.Agent")
    for reserved in ("input", "session", "starting_agent"):
        if reserved in run_options:
            raise TypeError(f"invalid run option {reserved!r}: the session supplies it")

    async def run(turn: Turn) -> None:
        history, prompt = history_and_prompt(turn)
        items = to_input_items(history)
        if prompt is not None:  # None: a resumed turn continues its durable history
            items.append({"role": "user", "content": prompt})
        mapper = _EventMapper(turn)
        result = Runner.run_streamed(sdk_agent, input=items, **run_options)
        try:
            async for event in result.stream_events():
                await mapper.on_event(event)
        finally:
            if not result.is_complete:  # the turn was cancelled, or mapping failed
                result.cancel()
        await turn.reply()

    run.__name__ = run.__qualname__ = f"openai_agents_agent[{sdk_agent.name}]"
    return run


class _EventMapper:
    """``stream_events()`` of one run → the turn's calls."""

    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self.calls = ToolCalls(turn)
        self.streamed: set[str] = set()  # ids of output items whose text was streamed

    async def on_event(self, event: object) -> None:
        if isinstance(event, RawResponsesStreamEvent):
            await self.on_raw(event.data)
        elif isinstance(event, RunItemStreamEvent):
            await self.on_item(event)

    async def on_raw(self, data: Any) -> None:
        kind = getattr(data, "type", None)
        if kind in _TEXT_DELTAS and data.delta:
            self.streamed.add(data.item_id)
            await self.turn.token(data.delta)
        elif kind in _REASONING_DELTAS and data.delta:
            await self.turn.reasoning(data.delta)
        elif kind == "response.completed" and data.response.usage is not None:
            usage = data.response.usage
            await report_usage(self.turn, usage.input_tokens, usage.output_tokens)

    async def on_item(self, event: RunItemStreamEvent) -> None:
        item = event.item
        raw = item.raw_item
        if event.name in ("tool_called", "handoff_requested"):
            call_id, name = _field(raw, "call_id") or _field(raw, "id"), _field(raw, "name")
            await self.calls.start(call_id or "", name or "tool", _field(raw, "arguments"))
        elif event.name in ("tool_output", "handoff_occured"):
            call_id = _field(raw, "call_id") or ""
            raw_output = _field(raw, "output")
            output = getattr(item, "output", raw_output)
            result = json_ready(output, lambda: raw_output or str(output))
            await self.calls.finish(call_id, "tool", result)
        elif isinstance(item, MessageOutputItem) and _field(raw, "id") not in self.streamed:
            text = ItemHelpers.extract_last_content(item.raw_item)
            if text:
                await self.turn.token(text)


def _field(raw: object, key: str) -> str | None:
    value = raw.get(key) if isinstance(raw, Mapping) else getattr(raw, key, None)
    return value if isinstance(value, str) else None
