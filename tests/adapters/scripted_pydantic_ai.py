"""pydantic-ai agents driven by pydantic-ai's own ``FunctionModel`` (a stand-in for a paid
model API), for the adapter tests; ``crash_agent`` is loaded by ``runtime run``.

Not a test module (no ``test_`` prefix).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
from _support import LOOKUP_ID, LOOKUP_RESULT, WAIT_ID
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.messages import ModelMessage, ModelRequest, ToolReturnPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, DeltaThinkingPart, DeltaToolCall, FunctionModel

from runtime.adapters.pydantic_ai import agent as adapt

Stream = AsyncIterator[str | dict[int, DeltaToolCall] | dict[int, DeltaThinkingPart]]


def tool_returns(messages: list[ModelMessage]) -> list[ToolReturnPart]:
    """The tool returns of the last request (what the model answers to now)."""
    last = messages[-1]
    if not isinstance(last, ModelRequest):
        return []
    return [p for p in last.parts if isinstance(p, ToolReturnPart)]


def user_prompts(messages: list[ModelMessage]) -> list[str]:
    return [
        str(p.content)
        for m in messages
        if isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, UserPromptPart)
    ]


def weather_agent(seen: list[list[ModelMessage]]) -> Agent[None, str]:
    """Thinks, then calls ``weather`` twice in parallel (arguments streamed in pieces),
    then answers from the results, naming every user prompt it has seen so far. Each
    model request's messages are appended to ``seen``."""

    async def model(messages: list[ModelMessage], info: AgentInfo) -> Stream:
        seen.append(list(messages))
        returns = tool_returns(messages)
        if returns:
            results = ", ".join(f"{r.tool_call_id}={r.content}" for r in returns)
            yield "Weather: "
            yield results
            yield f". Prompts so far: {' | '.join(user_prompts(messages))}"
            return
        turn = len(user_prompts(messages))
        yield {0: DeltaThinkingPart(content="Two cities, ")}
        yield {0: DeltaThinkingPart(content="two calls.")}
        # both calls' ids are the model's own; turn 2 reuses turn 1's ids on purpose
        # (models do), which the runtime keeps as they are across turns
        del turn
        yield {1: DeltaToolCall(name="weather", json_args='{"city": ', tool_call_id="call_par")}
        yield {1: DeltaToolCall(json_args='"Paris"}')}
        yield {
            2: DeltaToolCall(name="weather", json_args='{"city": "Oslo"}', tool_call_id="call_osl")
        }

    pa = Agent(FunctionModel(stream_function=model), instructions="Answer about weather.")

    @pa.tool_plain
    async def weather(city: str) -> dict[str, Any]:
        """Current weather of ``city``."""
        await anyio.sleep(0.01)
        return {"city": city, "sky": "rain" if city == "Oslo" else "sun"}

    return pa


def failing_tool_agent() -> Agent[None, str]:
    """Calls ``explode``, which asks the model to retry (``ModelRetry``); then answers
    with what the model read. ``boom`` raises a plain error, which ends pydantic-ai's run."""

    async def model(messages: list[ModelMessage], info: AgentInfo) -> Stream:
        returns = tool_returns(messages)
        if returns:
            yield f"The tool said: {returns[0].model_response_str()}"
            return
        prompt = user_prompts(messages)[-1]
        name = "boom" if "boom" in prompt else "explode"
        yield {0: DeltaToolCall(name=name, json_args="{}", tool_call_id=f"call_{name}")}

    pa = Agent(FunctionModel(stream_function=model))

    @pa.tool_plain
    def explode() -> str:
        """Always asks for a retry."""
        raise ModelRetry("the fuse was lit")

    @pa.tool_plain
    def boom() -> str:
        """Always fails."""
        raise ValueError("the fuse blew")

    return pa


def stalling_agent(streaming: anyio.Event) -> Agent[None, str]:
    """Streams ``Hello wor``, sets ``streaming``, then waits forever (to be cancelled)."""

    async def model(messages: list[ModelMessage], info: AgentInfo) -> Stream:
        yield "Hello "
        yield "wor"
        streaming.set()
        await anyio.sleep_forever()
        yield "ld"  # pragma: no cover - never reached

    return Agent(FunctionModel(stream_function=model))


def _crash_agent() -> Agent[None, str]:
    """Step 1 calls ``lookup``; step 2 calls ``wait``, which sleeps for an hour."""

    async def model(messages: list[ModelMessage], info: AgentInfo) -> Stream:
        returns = tool_returns(messages)
        if not returns:
            args = json.dumps({"name": "TaskGroup"})
            yield {0: DeltaToolCall(name="lookup", json_args=args, tool_call_id=LOOKUP_ID)}
        else:
            yield {0: DeltaToolCall(name="wait", json_args="{}", tool_call_id=WAIT_ID)}

    pa = Agent(FunctionModel(stream_function=model))

    @pa.tool_plain
    def lookup(name: str) -> str:
        """Where ``name`` is defined."""
        return LOOKUP_RESULT

    @pa.tool_plain
    async def wait() -> str:
        """Waits an hour (the test kills the process first)."""
        await anyio.sleep(3600)
        return "waited"

    return pa


crash_agent = adapt(_crash_agent())
