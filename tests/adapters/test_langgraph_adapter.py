"""runtime.adapters.langgraph: a compiled LangGraph graph run by the runtime.

The chat models are LangChain's own fakes (scripted; stand-ins for a paid model API);
the tools run in LangGraph's ``ToolNode``; the store is a real FileStore; the crash
test SIGKILLs a real subprocess.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypedDict

from _support import INTERVAL, require

require("langgraph", "langgraph")

import anyio  # noqa: E402
import pytest  # noqa: E402
from _support import check_crash_recovery, of_type, run_turn  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.graph import START, MessagesState, StateGraph  # noqa: E402
from langgraph.graph.message import add_messages  # noqa: E402
from scripted_langgraph import (  # noqa: E402
    counted_graph,
    failing_tool_graph,
    stalling_graph,
    survey_graph,
    weather_graph,
)

from runtime import FileStore, Runtime, Turn, model_messages  # noqa: E402
from runtime.adapters.langgraph import agent as adapt  # noqa: E402

PROMPT = "Weather in Paris and Oslo?"


async def test_tool_calls_stream_as_runtime_events_with_the_models_ids(tmp_path: Path) -> None:
    seen: list[list[BaseMessage]] = []
    async with Runtime(FileStore(tmp_path), adapt(weather_graph(seen))) as rt:
        session = rt.new_session()
        events = await run_turn(rt, session.session_id, PROMPT)
        stored = await rt.get_session(session.session_id)

    assert [e.type for e in events][-2:] == ["done", "stream.end"]
    started = of_type(events, "tool.started")
    assert [(d["call_id"], d["name"], d["arguments"]) for d in started] == [
        ("call_par", "weather", {"city": "Paris"}),
        ("call_osl", "weather", {"city": "Oslo"}),
    ]
    completed = {d["call_id"]: d for d in of_type(events, "tool.completed")}
    assert set(completed) == {"call_par", "call_osl"}
    assert '"sky": "rain"' in completed["call_osl"]["result"]
    # the tools' get_stream_writer() notes arrive as reasoning, while they run
    notes = sorted(d["text"] for d in of_type(events, "reasoning"))
    assert notes == ["asking the sky over Oslo", "asking the sky over Paris"]
    tokens = "".join(d["text"] for d in of_type(events, "token"))
    assert tokens == "Checking both.Sunny in Paris, rainy in Oslo."

    messages = stored.messages
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "assistant"]
    assert messages[1]["content"] == "Checking both."
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["call_par", "call_osl"]
    assert [m["tool_call_id"] for m in messages[2:4]] == ["call_par", "call_osl"]
    assert messages[4]["content"] == "Sunny in Paris, rainy in Oslo."


async def test_second_turn_hands_the_graph_the_session_history(tmp_path: Path) -> None:
    seen: list[list[BaseMessage]] = []
    async with Runtime(FileStore(tmp_path), adapt(weather_graph(seen))) as rt:
        session = rt.new_session()
        await run_turn(rt, session.session_id, PROMPT)
        events = await run_turn(rt, session.session_id, "And tomorrow?")
        stored = await rt.get_session(session.session_id)
    assert "".join(d["text"] for d in of_type(events, "token")) == "Tomorrow looks the same."
    history = seen[-1]  # what the model got in the second turn
    assert [type(m) for m in history] == [
        HumanMessage,
        AIMessage,
        ToolMessage,
        ToolMessage,
        AIMessage,
        HumanMessage,
    ]
    call = history[1]
    assert isinstance(call, AIMessage)
    assert [(c["id"], c["args"]) for c in call.tool_calls] == [
        ("call_par", {"city": "Paris"}),
        ("call_osl", {"city": "Oslo"}),
    ]
    assert [m.content for m in history[::5]] == [PROMPT, "And tomorrow?"]
    # and the stored transcript is one a model accepts as it is
    assert model_messages(stored.messages)[-1] == {
        "role": "assistant",
        "content": "Tomorrow looks the same.",
    }


async def test_a_model_that_does_not_stream_and_reports_usage(tmp_path: Path) -> None:
    async with Runtime(FileStore(tmp_path), adapt(counted_graph())) as rt:
        session = rt.new_session()
        events = await run_turn(rt, session.session_id, "Rome?")
        stored = await rt.get_session(session.session_id)
    assert of_type(events, "usage") == [
        {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        {"prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34},
    ]
    assert [d["call_id"] for d in of_type(events, "tool.completed")] == ["call_one"]
    assert [d["text"] for d in of_type(events, "reasoning")][-1] == "Rome said sun."
    assert "".join(d["text"] for d in of_type(events, "token")) == "Sunny in Rome."
    assert [m["role"] for m in stored.messages] == ["user", "assistant", "tool", "assistant"]


async def test_node_filter_and_custom_handler(tmp_path: Path) -> None:
    """``nodes`` limits token streaming to chat models in those nodes (the others' messages
    still arrive whole, from the state updates); ``on_custom`` gets non-text custom chunks."""
    custom: list[object] = []

    async def on_custom(turn: Turn, chunk: object) -> None:
        custom.append(chunk)

    graph = survey_graph()
    async with Runtime(
        FileStore(tmp_path), adapt(graph, nodes=["elsewhere"], on_custom=on_custom)
    ) as rt:
        session = rt.new_session()
        events = await run_turn(rt, session.session_id, "Survey Lima")
        stored = await rt.get_session(session.session_id)
    assert [d["text"] for d in of_type(events, "token")] == ["On it.", "Done."]
    assert custom == [{"step": "survey", "city": "Lima"}]
    assert [m["role"] for m in stored.messages] == ["user", "assistant", "tool", "assistant"]


async def test_a_failing_tool_gives_the_model_the_error(tmp_path: Path) -> None:
    async with Runtime(FileStore(tmp_path), adapt(failing_tool_graph())) as rt:
        session = rt.new_session()
        events = await run_turn(rt, session.session_id, "Light it")
        stored = await rt.get_session(session.session_id)
    assert [e.type for e in events][-2:] == ["done", "stream.end"]
    (completed,) = of_type(events, "tool.completed")
    assert completed["call_id"] == "call_boom" and "the fuse was lit" in completed["error"]
    tool_message = next(m for m in stored.messages if m["role"] == "tool")
    assert "the fuse was lit" in tool_message["content"]
    assert stored.messages[-1]["content"] == "It failed."


async def test_cancel_mid_stream_keeps_the_partial_text_once(tmp_path: Path) -> None:
    streaming = anyio.Event()
    async with Runtime(
        FileStore(tmp_path), adapt(stalling_graph(streaming)), checkpoint_interval=INTERVAL
    ) as rt:
        session = rt.new_session()
        stream_id = await rt.start_turn(session.session_id, "Say hello")
        with anyio.fail_after(10):
            await streaming.wait()
        assert await rt.cancel(stream_id) is True
        with anyio.fail_after(10):
            events = [e async for e in rt.events(stream_id)]
        stored = await rt.get_session(session.session_id)
        await rt.cancel(await rt.start_turn(session.session_id, "again"))
    assert [e.type for e in events][-2:] == ["cancelled", "stream.end"]
    partial = [m for m in stored.messages if m.get("_partial")]
    assert [m["content"] for m in partial] == ["Hello world"]
    assert len([m for m in stored.messages if m.get("type") == "cancelled"]) == 1


def test_sigkill_mid_turn_then_recovery(tmp_path: Path) -> None:
    check_crash_recovery("tests/adapters/scripted_langgraph.py:crash_agent", tmp_path)


class Notes(TypedDict):
    notes: Annotated[list[BaseMessage], add_messages]


async def test_a_graph_keeping_its_messages_under_another_key(tmp_path: Path) -> None:
    async def answer(state: Notes) -> dict[str, Any]:
        count = len(state["notes"])
        return {"notes": [AIMessage(f"I have {count} notes.", id=f"note-{count}")]}

    builder = StateGraph(Notes)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    async with Runtime(FileStore(tmp_path), adapt(builder.compile(), input_key="notes")) as rt:
        session = rt.new_session()
        await run_turn(rt, session.session_id, "one")
        events = await run_turn(rt, session.session_id, "two")
    # the second turn got the first turn's prompt and answer plus its own prompt
    assert [d["text"] for d in of_type(events, "token")] == ["I have 3 notes."]


def test_bad_input_is_refused_with_a_clear_error() -> None:
    with pytest.raises(TypeError, match="must be a compiled LangGraph graph"):
        adapt(object())  # type: ignore[arg-type]
    builder = StateGraph(MessagesState)
    builder.add_node("echo", lambda state: {"messages": []})
    builder.add_edge(START, "echo")
    with pytest.raises(ValueError, match="without a checkpointer"):
        adapt(builder.compile(checkpointer=InMemorySaver()))
