"""runtime.adapters.pydantic_ai: a pydantic-ai agent run by the runtime.

The model is pydantic-ai's own ``FunctionModel`` (scripted; a stand-in for a paid
model API); the store is a real FileStore; the crash test SIGKILLs a real subprocess.
"""

from __future__ import annotations

from pathlib import Path

from _support import INTERVAL, require

require("pydantic_ai", "pydantic-ai")

import anyio  # noqa: E402
import pytest  # noqa: E402
from _support import check_crash_recovery, of_type, run_turn  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from pydantic_ai import Agent  # noqa: E402
from pydantic_ai.messages import (  # noqa: E402
    ModelMessage,
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.test import TestModel  # noqa: E402
from scripted_pydantic_ai import failing_tool_agent, stalling_agent, weather_agent  # noqa: E402

from runtime import FileStore, Runtime  # noqa: E402
from runtime.adapters.pydantic_ai import agent as adapt  # noqa: E402
from runtime.adapters.pydantic_ai import from_openai_messages  # noqa: E402

PROMPT = "Weather in Paris and Oslo?"


async def test_tool_calls_stream_as_runtime_events_with_the_models_ids(tmp_path: Path) -> None:
    seen: list[list[ModelMessage]] = []
    async with Runtime(FileStore(tmp_path), adapt(weather_agent(seen))) as rt:
        session = rt.new_session()
        events = await run_turn(rt, session.session_id, PROMPT)
        stored = await rt.get_session(session.session_id)

    types = [e.type for e in events]
    assert types[-2:] == ["done", "stream.end"]
    assert "".join(d["text"] for d in of_type(events, "reasoning")) == "Two cities, two calls."
    started = of_type(events, "tool.started")
    assert [(d["call_id"], d["name"], d["arguments"]) for d in started] == [
        ("call_par", "weather", {"city": "Paris"}),
        ("call_osl", "weather", {"city": "Oslo"}),
    ]
    completed = {d["call_id"]: d for d in of_type(events, "tool.completed")}
    assert completed["call_par"]["result"] == {"city": "Paris", "sky": "sun"}
    assert completed["call_osl"]["error"] is None
    usage = of_type(events, "usage")
    assert len(usage) == 2 and all(u["prompt_tokens"] > 0 for u in usage)
    answer = "".join(d["text"] for d in of_type(events, "token"))
    assert answer.startswith("Weather: call_par=") and answer.endswith(f"Prompts so far: {PROMPT}")

    messages = stored.messages
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "assistant"]
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["call_par", "call_osl"]
    assert [m["tool_call_id"] for m in messages[2:4]] == ["call_par", "call_osl"]
    assert messages[4]["content"] == answer


async def test_second_turn_hands_the_model_the_session_history(tmp_path: Path) -> None:
    seen: list[list[ModelMessage]] = []
    async with Runtime(FileStore(tmp_path), adapt(weather_agent(seen))) as rt:
        session = rt.new_session()
        await run_turn(rt, session.session_id, PROMPT)
        first_answer = (await rt.get_session(session.session_id)).messages[-1]["content"]
        events = await run_turn(rt, session.session_id, "And tomorrow?")

    assert [e.type for e in events][-2:] == ["done", "stream.end"]
    answer = "".join(d["text"] for d in of_type(events, "token"))
    assert answer.endswith(f"Prompts so far: {PROMPT} | And tomorrow?")
    history = seen[2]  # the first model request of the second turn
    assert isinstance(history[-1], ModelRequest)
    assert [p.content for p in history[-1].parts if isinstance(p, UserPromptPart)] == [
        "And tomorrow?"
    ]
    calls = [p for m in history if isinstance(m, ModelResponse) for p in m.parts]
    assert [(p.tool_call_id, p.args_as_dict()) for p in calls if isinstance(p, ToolCallPart)] == [
        ("call_par", {"city": "Paris"}),
        ("call_osl", {"city": "Oslo"}),
    ]
    returns = [p for m in history if isinstance(m, ModelRequest) for p in m.parts]
    assert [(p.tool_name, p.tool_call_id) for p in returns if isinstance(p, ToolReturnPart)] == [
        ("weather", "call_par"),
        ("weather", "call_osl"),
    ]
    assert [p.content for p in calls if isinstance(p, TextPart)] == [first_answer]


async def test_a_tool_asking_for_a_retry_gives_the_model_the_error(tmp_path: Path) -> None:
    async with Runtime(FileStore(tmp_path), adapt(failing_tool_agent())) as rt:
        session = rt.new_session()
        events = await run_turn(rt, session.session_id, "Light it")
        stored = await rt.get_session(session.session_id)
    assert [e.type for e in events][-2:] == ["done", "stream.end"]
    (completed,) = of_type(events, "tool.completed")
    assert completed["call_id"] == "call_explode" and "the fuse was lit" in completed["error"]
    tool_message = next(m for m in stored.messages if m["role"] == "tool")
    assert "the fuse was lit" in tool_message["content"]
    assert "the fuse was lit" in stored.messages[-1]["content"]


async def test_a_tool_raising_ends_the_run_as_pydantic_ai_does(tmp_path: Path) -> None:
    """pydantic-ai re-raises a tool's plain exception: the turn ends with ``error``, and
    the call still gets its (error) result, so the transcript stays valid."""
    async with Runtime(FileStore(tmp_path), adapt(failing_tool_agent())) as rt:
        session = rt.new_session()
        events = await run_turn(rt, session.session_id, "boom")
        stored = await rt.get_session(session.session_id)
    assert [e.type for e in events][-2:] == ["error", "stream.end"]
    assert "the fuse blew" in of_type(events, "error")[0]["message"]
    (completed,) = of_type(events, "tool.completed")
    assert completed["call_id"] == "call_boom" and completed["error"]
    assert [m["role"] for m in stored.messages] == ["user", "assistant", "tool", "assistant"]
    assert stored.messages[-1]["type"] == "error"


async def test_cancel_mid_stream_keeps_the_partial_text_once(tmp_path: Path) -> None:
    streaming = anyio.Event()
    async with Runtime(
        FileStore(tmp_path), adapt(stalling_agent(streaming)), checkpoint_interval=INTERVAL
    ) as rt:
        session = rt.new_session()
        stream_id = await rt.start_turn(session.session_id, "Say hello")
        with anyio.fail_after(10):
            await streaming.wait()
        assert await rt.cancel(stream_id) is True
        with anyio.fail_after(10):
            events = [e async for e in rt.events(stream_id)]
        stored = await rt.get_session(session.session_id)
        # the session takes a new turn at once
        await rt.cancel(await rt.start_turn(session.session_id, "again"))
    assert [e.type for e in events][-2:] == ["cancelled", "stream.end"]
    partial = [m for m in stored.messages if m.get("_partial")]
    assert [m["content"] for m in partial] == ["Hello wor"]
    assert len([m for m in stored.messages if m.get("type") == "cancelled"]) == 1


def test_sigkill_mid_turn_then_recovery(tmp_path: Path) -> None:
    check_crash_recovery("tests/adapters/scripted_pydantic_ai.py:crash_agent", tmp_path)


async def test_test_model_runs_through_the_adapter(tmp_path: Path) -> None:
    """pydantic-ai's TestModel calls every tool once, then answers with their results."""
    pa = Agent(TestModel())

    @pa.tool_plain
    def double(n: int) -> int:
        """Twice ``n``."""
        return 2 * n

    async with Runtime(FileStore(tmp_path), adapt(pa)) as rt:
        session = rt.new_session()
        events = await run_turn(rt, session.session_id, "double something")
        stored = await rt.get_session(session.session_id)
    (started,) = of_type(events, "tool.started")
    (completed,) = of_type(events, "tool.completed")
    assert started["name"] == "double" and completed["call_id"] == started["call_id"]
    assert completed["result"] == 2 * started["arguments"]["n"]
    assert stored.messages[-1]["role"] == "assistant" and stored.messages[-1]["content"]


class Forecast(BaseModel):
    city: str
    rain: bool


async def test_a_structured_output_becomes_the_final_message(tmp_path: Path) -> None:
    """With an ``output_type``, TestModel answers through pydantic-ai's output tool: that
    call is a tool call of the transcript, and the output's JSON the final answer."""
    pa = Agent(TestModel(), output_type=Forecast)
    async with Runtime(FileStore(tmp_path), adapt(pa)) as rt:
        session = rt.new_session()
        events = await run_turn(rt, session.session_id, "Forecast?")
        stored = await rt.get_session(session.session_id)
    (started,) = of_type(events, "tool.started")
    (completed,) = of_type(events, "tool.completed")
    assert started["name"] == "final_result" and completed["error"] is None
    assert [m["role"] for m in stored.messages] == ["user", "assistant", "tool", "assistant"]
    assert Forecast.model_validate_json(stored.messages[-1]["content"]) == Forecast(
        **started["arguments"]
    )


def test_from_openai_messages_maps_every_role() -> None:
    converted = from_openai_messages(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
            {"role": "assistant", "content": "42."},
        ]
    )
    assert [type(m) for m in converted] == [
        ModelRequest,
        ModelResponse,
        ModelRequest,
        ModelResponse,
    ]
    first, call, result, answer = converted
    assert [type(p) for p in first.parts] == [SystemPromptPart, UserPromptPart]
    assert [p.content for p in first.parts] == ["Be brief.", "Hi"]
    assert isinstance(call.parts[1], ToolCallPart) and call.parts[1].tool_call_id == "c1"
    (ret,) = result.parts
    assert isinstance(ret, ToolReturnPart) and (ret.tool_name, ret.content) == ("f", "42")
    assert isinstance(answer.parts[0], TextPart) and answer.parts[0].content == "42."


def test_bad_input_is_refused_with_a_clear_error() -> None:
    with pytest.raises(TypeError, match="must be a pydantic_ai Agent"):
        adapt(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'message_history': the session supplies it"):
        adapt(Agent(TestModel()), message_history=[])
    with pytest.raises(ValueError, match="invalid message role 'robot'"):
        from_openai_messages([{"role": "robot", "content": "beep"}])
