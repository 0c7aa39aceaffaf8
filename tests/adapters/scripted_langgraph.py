"""LangGraph graphs driven by LangChain's own fake chat models (``GenericFakeChatModel``
streams, ``FakeMessagesListChatModel`` does not; stand-ins for a paid model API), for
the adapter tests; ``crash_agent`` is loaded by ``runtime run``.

Not a test module (no ``test_`` prefix).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import anyio
from _support import LOOKUP_ID, LOOKUP_RESULT, WAIT_ID
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import (
    FakeMessagesListChatModel,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tools import BaseTool, tool
from langgraph.config import get_stream_writer
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from runtime.adapters.langgraph import agent as adapt


def calls(*specs: tuple[str, str, dict[str, Any]], text: str = "") -> AIMessage:
    """An assistant message calling tools, the way an OpenAI model's message carries
    them (``GenericFakeChatModel`` streams ``additional_kwargs``, not ``tool_calls``)."""
    tool_calls = [
        {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
        for i, n, a in specs
    ]
    return AIMessage(content=text, additional_kwargs={"tool_calls": tool_calls})


def graph(
    model: BaseChatModel,
    tools: list[BaseTool],
    seen: list[list[BaseMessage]] | None = None,
    *,
    handle_tool_errors: bool = False,
) -> Any:
    """model ⇄ tools, the loop ``create_react_agent`` builds, with a node that records
    the messages the model is given."""

    async def call_model(state: MessagesState) -> dict[str, Any]:
        if seen is not None:
            seen.append(list(state["messages"]))
        return {"messages": [await model.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_node("tools", ToolNode(tools, handle_tool_errors=handle_tool_errors))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", tools_condition)
    builder.add_edge("tools", "model")
    return builder.compile(name="scripted")


@tool
async def weather(city: str) -> str:
    """Current weather of ``city``."""
    get_stream_writer()(f"asking the sky over {city}")
    await anyio.sleep(0.01)
    return json.dumps({"city": city, "sky": "rain" if city == "Oslo" else "sun"})


@tool
def survey(city: str) -> str:
    """Writes a progress dict to the custom stream, then answers."""
    get_stream_writer()({"step": "survey", "city": city})
    return f"{city} surveyed"


@tool
def explode() -> str:
    """Always fails."""
    raise ValueError("the fuse was lit")


def streaming_model(replies: Iterable[AIMessage | str]) -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(replies))


def weather_graph(seen: list[list[BaseMessage]]) -> Any:
    """Calls ``weather`` for Paris and Oslo in parallel, then answers; a second turn is
    answered at once."""
    model = streaming_model(
        [
            calls(
                ("call_par", "weather", {"city": "Paris"}),
                ("call_osl", "weather", {"city": "Oslo"}),
                text="Checking both.",
            ),
            "Sunny in Paris, rainy in Oslo.",
            "Tomorrow looks the same.",
        ]
    )
    return graph(model, [weather], seen)


def counted_graph() -> Any:
    """A model that does not stream and reports token usage, calling ``weather`` once;
    its answer carries a reasoning content block."""
    first = calls(("call_one", "weather", {"city": "Rome"}))
    first.usage_metadata = {"input_tokens": 11, "output_tokens": 7, "total_tokens": 18}
    answer = AIMessage(
        [
            {"type": "reasoning", "reasoning": "Rome said sun."},
            {"type": "text", "text": "Sunny in Rome."},
        ],
        usage_metadata={"input_tokens": 30, "output_tokens": 4, "total_tokens": 34},
    )
    return graph(FakeMessagesListChatModel(responses=[first, answer]), [weather])


def survey_graph() -> Any:
    """Streams text, calls ``survey`` (which writes a dict to the custom stream), answers."""
    model = streaming_model(
        [calls(("call_sv", "survey", {"city": "Lima"}), text="On it."), "Done."]
    )
    return graph(model, [survey])


def failing_tool_graph() -> Any:
    """Calls ``explode``; ToolNode (``handle_tool_errors=True``) turns its error into an
    error ``ToolMessage``."""
    model = streaming_model([calls(("call_boom", "explode", {})), "It failed."])
    return graph(model, [explode], handle_tool_errors=True)


def stalling_graph(streaming: anyio.Event) -> Any:
    """A model node that streams ``Hello world`` and then waits forever."""
    model = streaming_model(["Hello world"])

    async def call_model(state: MessagesState) -> dict[str, Any]:
        async for _ in model.astream(state["messages"]):
            pass
        streaming.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")  # pragma: no cover

    builder = StateGraph(MessagesState)
    builder.add_node("model", call_model)
    builder.add_edge(START, "model")
    return builder.compile()


@tool
def lookup(name: str) -> str:
    """Where ``name`` is defined."""
    return LOOKUP_RESULT


@tool
async def wait() -> str:
    """Waits an hour (the test kills the process first)."""
    await anyio.sleep(3600)
    return "waited"


crash_agent = adapt(
    graph(
        streaming_model(
            [calls((LOOKUP_ID, "lookup", {"name": "TaskGroup"})), calls((WAIT_ID, "wait", {}))]
        ),
        [lookup, wait],
    )
)
