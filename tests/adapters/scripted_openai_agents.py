"""OpenAI Agents SDK agents driven by the SDK's own ``agents.testing.ScriptedModel`` (a
stand-in for a paid model API), for the adapter tests; ``crash_agent`` is loaded by
``runtime run``.

Not a test module (no ``test_`` prefix).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
from _support import LOOKUP_ID, LOOKUP_RESULT, WAIT_ID
from agents import Agent, RunConfig, function_tool
from agents.items import TResponseStreamEvent
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call
from agents.usage import Usage
from openai.types.responses import ResponseReasoningItem, ResponseTextDeltaEvent
from openai.types.responses.response_reasoning_item import Summary

from runtime.adapters.openai_agents import agent as adapt

#: Runs here export no traces (there is no API to send them to).
OFFLINE = RunConfig(tracing_disabled=True)


@function_tool
async def weather(city: str) -> dict[str, Any]:
    """Current weather of ``city``."""
    await anyio.sleep(0.01)
    return {"city": city, "sky": "rain" if city == "Oslo" else "sun"}


@function_tool
def explode() -> str:
    """Always fails."""
    raise ValueError("the fuse was lit")


def weather_model() -> ScriptedModel:
    """Reasons, says it checks, calls ``weather`` twice in parallel, then answers; a
    second turn is answered at once."""
    reasoning = ResponseReasoningItem(
        id="rs_1",
        type="reasoning",
        summary=[Summary(text="Two cities, two calls.", type="summary_text")],
    )
    return ScriptedModel(
        [
            ModelStep(
                output=[
                    reasoning,
                    assistant_message("Checking both.", item_id="msg_1"),
                    function_call("weather", {"city": "Paris"}, call_id="call_par"),
                    function_call("weather", {"city": "Oslo"}, call_id="call_osl"),
                ],
                usage=Usage(requests=1, input_tokens=12, output_tokens=8, total_tokens=20),
            ),
            [assistant_message("Sunny in Paris, rainy in Oslo.", item_id="msg_2")],
            [assistant_message("Tomorrow looks the same.", item_id="msg_3")],
        ]
    )


def weather_agent(model: ScriptedModel) -> Agent[Any]:
    return Agent(name="weather", instructions="Answer about weather.", model=model, tools=[weather])


def failing_tool_agent() -> Agent[Any]:
    """Calls ``explode``; the SDK hands the model the tool's error as its output."""
    model = ScriptedModel(
        [
            [function_call("explode", {}, call_id="call_boom")],
            [assistant_message("It failed.")],
        ]
    )
    return Agent(name="exploder", model=model, tools=[explode])


def stalling_agent(streaming: anyio.Event) -> Agent[Any]:
    """A model stream that sends ``Hello wor`` and then waits forever."""

    async def stream(call: ModelCall) -> AsyncIterator[TResponseStreamEvent]:
        for n, text in enumerate(["Hello ", "wor"]):
            yield ResponseTextDeltaEvent(
                type="response.output_text.delta",
                item_id="msg_1",
                output_index=0,
                content_index=0,
                delta=text,
                logprobs=[],
                sequence_number=n,
            )
        streaming.set()
        await anyio.sleep_forever()

    return Agent(name="staller", model=ScriptedModel([ModelStep.stream(stream)]))


@function_tool
def lookup(name: str) -> str:
    """Where ``name`` is defined."""
    return LOOKUP_RESULT


@function_tool
async def wait() -> str:
    """Waits an hour (the test kills the process first)."""
    await anyio.sleep(3600)
    return "waited"


crash_agent = adapt(
    Agent(
        name="crash",
        model=ScriptedModel(
            [
                [function_call("lookup", {"name": "TaskGroup"}, call_id=LOOKUP_ID)],
                [function_call("wait", {}, call_id=WAIT_ID)],
            ]
        ),
        tools=[lookup, wait],
    ),
    run_config=OFFLINE,
)
