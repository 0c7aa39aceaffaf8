"""runtime.adapters.openai_agents.agent: an OpenAI Agents SDK agent run by the runtime.

The model is the SDK's own ``agents.testing.ScriptedModel`` (a stand-in for a paid
model API); the store is a real FileStore; the crash test SIGKILLs a real subprocess.
"""

from __future__ import annotations

from pathlib import Path

from _support import INTERVAL, require

require("agents", "openai-agents")

import anyio  # noqa: E402
import pytest  # noqa: E402
from _support import check_crash_recovery, of_type, run_turn  # noqa: E402
from agents import Agent  # noqa: E402
from agents.testing import ScriptedModel, assistant_message, function_call  # noqa: E402
from scripted_openai_agents import (  # noqa: E402
    OFFLINE,
    failing_tool_agent,
    stalling_agent,
    weather_agent,
    weather_model,
)

from runtime import FileStore, Runtime  # noqa: E402
from runtime.adapters.openai_agents import agent as adapt  # noqa: E402
from runtime.adapters.openai_agents import to_input_items  # noqa: E402

PROMPT = "Weather in Paris and Oslo?"


async def test_tool_calls_stream_as_runtime_events_with_the_models_ids(tmp_path: Path) -> None:
    model = weather_model()
    async with Runtime(FileStore(tmp_path), adapt(weather_agent(model), run_config=OFFLINE)) as rt:
        session = rt.new_session()
        events = await run_turn(rt, session.session_id, PROMPT)
        stored = await rt.get_session(session.session_id)

    assert [e.type for e in events][-2:] == ["done", "stream.end"]
    assert "".join(d["text"] for d in of_type(events, "reasoning")) == "Two cities, two calls."
    started = of_type(events, "tool.started")
    assert [(d["call_id"], d["name"], d["arguments"]) for d in started] == [
        ("call_par", "weather", {"city": "Paris"}),
        ("call_osl", "weather", {"city": "Oslo"}),
    ]
    completed = {d["call_id"]: d for d in of_type(events, "tool.completed")}
    assert completed["call_osl"]["result"] == {"city": "Oslo", "sky": "rain"}
    assert of_type(events, "usage")[0] == {
        "prompt_tokens": 12,
        "completion_tokens": 8,
        "total_tokens": 20,
    }
    tokens = "".join(d["text"] for d in of_type(events, "token"))
    assert tokens == "Checking both.Sunny in Paris, rainy in Oslo."

    messages = stored.messages
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "assistant"]
    assert messages[1]["content"] == "Checking both."
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["call_par", "call_osl"]
    assert [m["tool_call_id"] for m in messages[2:4]] == ["call_par", "call_osl"]
    assert messages[4]["content"] == "Sunny in Paris, rainy in Oslo."


async def test_second_turn_hands_the_model_the_session_history(tmp_path: Path) -> None:
    model = weather_model()
    async with Runtime(FileStore(tmp_path), adapt(weather_agent(model), run_config=OFFLINE)) as rt:
        session = rt.new_session()
        await run_turn(rt, session.session_id, PROMPT)
        events = await run_turn(rt, session.session_id, "And tomorrow?")
    assert "".join(d["text"] for d in of_type(events, "token")) == "Tomorrow looks the same."
    last = model.last_call
    assert last is not None
    assert last.input == [
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": "Checking both."},
        {
            "type": "function_call",
            "call_id": "call_par",
            "name": "weather",
            "arguments": '{"city":"Paris"}',
        },
        {
            "type": "function_call",
            "call_id": "call_osl",
            "name": "weather",
            "arguments": '{"city":"Oslo"}',
        },
        {
            "type": "function_call_output",
            "call_id": "call_par",
            "output": '{"city":"Paris","sky":"sun"}',
        },
        {
            "type": "function_call_output",
            "call_id": "call_osl",
            "output": '{"city":"Oslo","sky":"rain"}',
        },
        {"role": "assistant", "content": "Sunny in Paris, rainy in Oslo."},
        {"role": "user", "content": "And tomorrow?"},
    ]


async def test_a_failing_tool_gives_the_model_the_error(tmp_path: Path) -> None:
    """The SDK turns a tool's exception into an output the model reads (its default
    failure text names no detail), so the call completes with that text."""
    async with Runtime(FileStore(tmp_path), adapt(failing_tool_agent(), run_config=OFFLINE)) as rt:
        session = rt.new_session()
        events = await run_turn(rt, session.session_id, "Light it")
        stored = await rt.get_session(session.session_id)
    assert [e.type for e in events][-2:] == ["done", "stream.end"]
    (completed,) = of_type(events, "tool.completed")
    assert completed["call_id"] == "call_boom"
    assert completed["result"].startswith("An error occurred while running the tool")
    tool_message = next(m for m in stored.messages if m["role"] == "tool")
    assert tool_message["content"] == completed["result"]
    assert stored.messages[-1]["content"] == "It failed."


async def test_cancel_mid_stream_keeps_the_partial_text_once(tmp_path: Path) -> None:
    streaming = anyio.Event()
    async with Runtime(
        FileStore(tmp_path),
        adapt(stalling_agent(streaming), run_config=OFFLINE),
        checkpoint_interval=INTERVAL,
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
    assert [m["content"] for m in partial] == ["Hello wor"]
    assert len([m for m in stored.messages if m.get("type") == "cancelled"]) == 1


async def test_a_handoff_is_a_tool_call_and_the_next_agent_answers(tmp_path: Path) -> None:
    billing = Agent(name="billing", model=ScriptedModel([[assistant_message("You owe nothing.")]]))
    triage = Agent(
        name="triage",
        model=ScriptedModel([[function_call("transfer_to_billing", {}, call_id="call_h")]]),
        handoffs=[billing],
    )
    async with Runtime(FileStore(tmp_path), adapt(triage, run_config=OFFLINE)) as rt:
        session = rt.new_session()
        events = await run_turn(rt, session.session_id, "My bill?")
        stored = await rt.get_session(session.session_id)
    (started,) = of_type(events, "tool.started")
    (completed,) = of_type(events, "tool.completed")
    assert (started["call_id"], started["name"]) == ("call_h", "transfer_to_billing")
    assert completed["call_id"] == "call_h" and "billing" in completed["result"]
    assert [m["role"] for m in stored.messages] == ["user", "assistant", "tool", "assistant"]
    assert stored.messages[-1]["content"] == "You owe nothing."


def test_sigkill_mid_turn_then_recovery(tmp_path: Path) -> None:
    check_crash_recovery("tests/adapters/scripted_openai_agents.py:crash_agent", tmp_path)


def test_to_input_items_maps_every_role() -> None:
    assert to_input_items(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ]
    ) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
    ]


def test_bad_input_is_refused_with_a_clear_error() -> None:
    with pytest.raises(TypeError, match=r"must be an OpenAI Agents SDK agents\.Agent"):
        adapt(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'session': the session supplies it"):
        adapt(Agent(name="a"), session=None)
    with pytest.raises(ValueError, match="invalid message role 'robot'"):
        to_input_items([{"role": "robot", "content": "beep"}])
