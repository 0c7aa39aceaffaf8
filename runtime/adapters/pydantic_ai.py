"""Run a pydantic-ai agent as a runtime agent (extra ``pydantic-ai``).

::

    from pydantic_ai import Agent
    from runtime.adapters.pydantic_ai import agent as runtime_agent

    weather = Agent("openai:gpt-5.2", instructions="Be brief.")
    agent = runtime_agent(weather)          # runtime run app.py:agent "Weather in Paris?"

Each turn calls ``Agent.run_stream_events(prompt, message_history=...)`` with the
session's history (``turn.model_messages()`` converted by :func:`from_openai_messages`)
and maps its events:

============================================  ==========================================
pydantic-ai event                             runtime
============================================  ==========================================
``TextPart`` start / ``TextPartDelta``        ``token``
``ThinkingPart`` start / ``ThinkingPartDelta``  ``reasoning``
end of a ``ToolCallPart``                     ``tool.started`` (the model's call id)
``FunctionToolResultEvent``,                  ``tool.completed``; a return whose outcome is
``OutputToolResultEvent``                     not ``success`` (failed, retried, denied)
                                              completes the call with that error text
each ``ModelResponse.usage``                  ``usage`` (``prompt_tokens``, ...)
============================================  ==========================================

A run's text is finished into one assistant message; text the model wrote before its
tool calls goes into the assistant message that carries them, as Chat Completions
does. A structured (non-``str``) output becomes a final assistant message holding its
JSON. Give the agent ``instructions=`` rather than ``system_prompt=``: pydantic-ai adds
system prompts only to a run without history, instructions to every request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

try:
    import pydantic_core
    from pydantic_ai import AgentRunResultEvent
    from pydantic_ai import messages as pm
    from pydantic_ai.agent import AbstractAgent
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "runtime.adapters.pydantic_ai needs pydantic-ai: pip install 'runtime[pydantic-ai]'"
    ) from exc

from .._runner import Agent, Turn
from ._common import ToolCalls, history_and_prompt, json_ready, report_usage, text_of

__all__ = ["agent", "from_openai_messages"]


def agent(pydantic_agent: AbstractAgent[Any, Any], **run_options: Any) -> Agent:
    """A runtime agent that runs ``pydantic_agent`` for each turn.

    :param pydantic_agent: a ``pydantic_ai.Agent`` (any ``AbstractAgent``).
    :param run_options: passed to every ``run_stream_events`` call (``deps=``,
        ``model_settings=``, ``usage_limits=``, ``model=``, ...); not ``message_history``,
        which the session supplies.
    :raises TypeError: if ``pydantic_agent`` is not a pydantic-ai agent, or
        ``run_options`` names ``message_history`` or ``user_prompt``.
    """
    if not isinstance(pydantic_agent, AbstractAgent):
        raise TypeError(
            f"invalid agent {pydantic_agent!r}: must be a pydantic_ai Agent (AbstractAgent)"
        )
    for reserved in ("message_history", "user_prompt"):
        if reserved in run_options:
            raise TypeError(f"invalid run option {reserved!r}: the session supplies it")

    async def run(turn: Turn) -> None:
        messages, prompt = history_and_prompt(turn)
        history = from_openai_messages(messages)
        mapper = _EventMapper(turn)
        async with pydantic_agent.run_stream_events(
            prompt, message_history=history, **run_options
        ) as stream:
            async for event in stream:
                await mapper.on_event(event)
                if isinstance(event, pm.FunctionToolCallEvent | pm.OutputToolCallEvent):
                    await mapper.report_usage(stream.new_messages())
            await mapper.report_usage(stream.new_messages())
        await mapper.finish()

    run.__name__ = run.__qualname__ = f"pydantic_ai_agent[{pydantic_agent.name or 'agent'}]"
    return run


class _EventMapper:
    """pydantic-ai stream events of one run → the turn's calls."""

    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self.calls = ToolCalls(turn)
        self.usage_reported = 0  # ModelResponses whose usage was emitted
        self.output: Any = None
        self.text_since_tools = False

    async def on_event(self, event: Any) -> None:
        match event:
            case (
                pm.PartStartEvent(part=pm.TextPart(content=text))
                | pm.PartDeltaEvent(delta=pm.TextPartDelta(content_delta=text))
            ):
                if text:
                    self.text_since_tools = True
                    await self.turn.token(text)
            case (
                pm.PartStartEvent(part=pm.ThinkingPart(content=text))
                | pm.PartDeltaEvent(delta=pm.ThinkingPartDelta(content_delta=str() as text))
            ):
                if text:
                    await self.turn.reasoning(text)
            case pm.PartEndEvent(part=pm.ToolCallPart() as part):
                await self.start(part)
            case pm.FunctionToolCallEvent(part=part) | pm.OutputToolCallEvent(part=part):
                await self.start(part)
            case pm.FunctionToolResultEvent(part=part) | pm.OutputToolResultEvent(part=part):
                await self.result(part)
            case AgentRunResultEvent(result=result):
                self.output = result.output

    async def start(self, part: pm.ToolCallPart) -> None:
        self.text_since_tools = False
        await self.calls.start(part.tool_call_id, part.tool_name, part.args_as_json_str())

    async def result(self, part: pm.ToolReturnPart) -> None:
        if part.outcome == "success":
            value = json_ready(part.content, part.model_response_str)
            await self.calls.finish(part.tool_call_id, part.tool_name, value)
        else:
            await self.calls.fail(part.tool_call_id, part.tool_name, part.model_response_str())

    async def report_usage(self, messages: list[pm.ModelMessage]) -> None:
        responses = [m for m in messages if isinstance(m, pm.ModelResponse)]
        for response in responses[self.usage_reported :]:
            usage = response.usage
            await report_usage(self.turn, usage.input_tokens, usage.output_tokens)
        self.usage_reported = len(responses)

    async def finish(self) -> None:
        output = self.output
        if output is not None and not isinstance(output, str):
            await self.turn.token(pydantic_core.to_json(output).decode())
        elif isinstance(output, str) and output and not self.text_since_tools:
            await self.turn.token(output)  # an output tool's text, never streamed
        await self.turn.reply()


def from_openai_messages(messages: Iterable[Mapping[str, Any]]) -> list[pm.ModelMessage]:
    """OpenAI chat-completions messages as pydantic-ai ``ModelMessage`` objects.

    ``system``/``developer`` → ``SystemPromptPart``; ``user`` → ``UserPromptPart`` (text
    parts joined); ``assistant`` → ``ModelResponse`` with a ``TextPart`` and one
    ``ToolCallPart`` per ``tool_calls`` entry (ids kept); ``tool`` → ``ToolReturnPart``
    (its tool name from the matching call when the message has none). Consecutive
    request parts share one ``ModelRequest``, as pydantic-ai builds them.

    :raises ValueError: for a message whose ``role`` is none of these.
    """
    out: list[pm.ModelMessage] = []
    request: list[pm.ModelRequestPart] = []
    names: dict[str, str] = {}  # call id → tool name
    for message in messages:
        role = message.get("role")
        content = text_of(message.get("content"))
        if role in ("system", "developer"):
            request.append(pm.SystemPromptPart(content))
        elif role == "user":
            request.append(pm.UserPromptPart(content))
        elif role == "tool":
            call_id = str(message.get("tool_call_id") or "")
            name = message.get("name") or names.get(call_id, "tool")
            request.append(pm.ToolReturnPart(tool_name=name, content=content, tool_call_id=call_id))
        elif role == "assistant":
            if request:
                out.append(pm.ModelRequest(parts=request))
                request = []
            out.append(pm.ModelResponse(parts=_response_parts(content, message, names)))
        else:
            raise ValueError(
                f"invalid message role {role!r}: must be system, developer, user, assistant or tool"
            )
    if request:
        out.append(pm.ModelRequest(parts=request))
    return out


def _response_parts(
    content: str, message: Mapping[str, Any], names: dict[str, str]
) -> list[pm.ModelResponsePart]:
    parts: list[pm.ModelResponsePart] = [pm.TextPart(content)] if content else []
    for spec in message.get("tool_calls") or ():
        function = spec.get("function") or {}
        name = str(function.get("name") or "")
        names[str(spec.get("id"))] = name
        parts.append(
            pm.ToolCallPart(
                tool_name=name,
                args=function.get("arguments") or "{}",
                tool_call_id=str(spec.get("id")),
            )
        )
    return parts
