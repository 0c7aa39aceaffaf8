"""``runtime.agents.openai_chat`` over the wire: the official ``openai`` SDK against the
chat-completions stand-in (``chat_standin.py``, a stand-in for a paid API that streams the
real SSE format and refuses what the real API refuses), run by a real uvicorn process."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from chat_standin import validate_messages
from conftest import StandIn

from runtime import Event, MemoryStore, Runtime
from runtime.agents import FunctionTool, function_tool, openai_chat

pytest.importorskip("openai")

WEATHER_CALLS: list[str] = []


async def get_weather(city: str, unit: str = "C") -> dict[str, Any]:
    """Current weather of a city.

    :param city: the city's name, e.g. "Paris".
    :param unit: ``C`` or ``F``.
    """
    await anyio.sleep(0.2)  # finishes after ``add``
    WEATHER_CALLS.append(city)
    return {"city": city, "sky": "sunny", "temperature": 21, "unit": unit}


def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first.
        b: the second.
    """
    return a + b


def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"exploded: {reason}")


async def run(
    agent: Any, text: str = "hi", store: Any = None
) -> tuple[list[Event], list[dict[str, Any]]]:
    store = MemoryStore() if store is None else store
    async with Runtime(store, agent) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, text)
        events = [e async for e in rt.events(stream_id)]
        messages = (await rt.get_session(s.session_id)).messages
    return events, messages


def of(events: list[Event], kind: str) -> list[Event]:
    return [e for e in events if e.type == kind]


def agent_for(standin: StandIn, **kwargs: Any) -> Any:
    kwargs.setdefault("tools", [get_weather, add, explode])
    return openai_chat(model="standin-1", base_url=standin.url, api_key="sk-test", **kwargs)


async def test_text_reasoning_and_usage_stream_through_the_turn(standin: StandIn) -> None:
    await standin.ascript(
        {"reasoning": "The user greets me.", "content": "Hello there, friend.", "split": 3}
    )
    events, messages = await run(agent_for(standin, system="Be brief.", tools=[]))
    assert "".join(e.data["text"] for e in of(events, "token")) == "Hello there, friend."
    assert len(of(events, "token")) == 7  # one per content delta
    assert "".join(e.data["text"] for e in of(events, "reasoning")) == "The user greets me."
    usage = of(events, "usage")
    assert [u.data["prompt_tokens"] for u in usage] == [11]
    assert usage[0].data["total_tokens"] == 11 + usage[0].data["completion_tokens"]
    assert events[-2].type == "done"
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "hi"),
        ("assistant", "Hello there, friend."),
    ]
    (request,) = await standin.arequests()
    assert request["status"] == 200
    assert request["body"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    assert request["body"]["stream_options"] == {"include_usage": True}
    assert "tools" not in request["body"]


async def test_parallel_tool_calls_split_across_chunks_run_and_go_back_in_order(
    standin: StandIn,
) -> None:
    await standin.ascript(
        {
            "content": "Let me check. ",
            "tool_calls": [
                {"id": "call_w1", "name": "get_weather", "arguments": '{"city": "Paris"}'},
                {"id": "call_a2", "name": "add", "arguments": '{"a": 2, "b": 40}'},
            ],
            "split": 3,
        },
        {"content": "Sunny in Paris, and 2 + 40 = 42."},
    )
    WEATHER_CALLS.clear()
    events, messages = await run(agent_for(standin), "Weather in Paris? And 2+40?")
    assert WEATHER_CALLS == ["Paris"]
    started = [(e.data["call_id"], e.data["arguments"]) for e in of(events, "tool.started")]
    assert started == [("call_w1", {"city": "Paris"}), ("call_a2", {"a": 2, "b": 40})]
    completed = {e.data["call_id"]: e.data for e in of(events, "tool.completed")}
    assert [e.data["call_id"] for e in of(events, "tool.completed")] == ["call_a2", "call_w1"]
    assert completed["call_a2"]["result"] == 42
    assert completed["call_w1"]["result"]["sky"] == "sunny"
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "assistant"]
    assert messages[1]["content"] == "Let me check. "
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["call_w1", "call_a2"]
    assert [m["tool_call_id"] for m in messages[2:4]] == ["call_w1", "call_a2"]
    assert messages[4]["content"] == "Sunny in Paris, and 2 + 40 = 42."

    first, second = await standin.arequests()
    assert [first["status"], second["status"]] == [200, 200]
    tools = {t["function"]["name"]: t["function"] for t in first["body"]["tools"]}
    assert tools["get_weather"]["description"] == "Current weather of a city."
    city = tools["get_weather"]["parameters"]["properties"]["city"]
    assert city == {"type": "string", "description": 'the city\'s name, e.g. "Paris".'}
    assert tools["add"]["parameters"]["required"] == ["a", "b"]
    assert tools["add"]["parameters"]["properties"]["b"]["description"] == "the second."
    sent = second["body"]["messages"]
    validate_messages(sent)
    assert sent[1]["tool_calls"][1] == {
        "id": "call_a2",
        "type": "function",
        "function": {"name": "add", "arguments": '{"a": 2, "b": 40}'},
    }
    assert sent[2:4] == [
        {"role": "tool", "tool_call_id": "call_w1", "content": messages[2]["content"]},
        {"role": "tool", "tool_call_id": "call_a2", "content": "42"},
    ]


async def test_failing_unknown_and_badly_called_tools_answer_the_model_with_errors(
    standin: StandIn,
) -> None:
    await standin.ascript(
        {
            "tool_calls": [
                {"id": "c1", "name": "explode", "arguments": '{"reason": "test"}'},
                {"id": "c2", "name": "no_such_tool", "arguments": "{}"},
                {"id": "c3", "name": "add", "arguments": '{"a": 1, "b": '},  # cut off
                {"id": "c4", "name": "add", "arguments": '{"a": "one", "b": 2}'},
            ]
        },
        {"content": "Sorry, the tools failed."},
    )
    events, messages = await run(agent_for(standin))
    assert events[-2].type == "done"
    errors = {e.data["call_id"]: e.data["error"] for e in of(events, "tool.completed")}
    assert errors["c1"] == "RuntimeError: exploded: test"
    assert errors["c2"] == "unknown tool 'no_such_tool'; the tools are: get_weather, add, explode"
    assert errors["c3"].startswith("the arguments are not a JSON object")
    assert "ValidationError" in errors["c4"] and "'one'" in errors["c4"]
    assert messages[1]["tool_calls"][2]["function"]["arguments"] == '{"a": 1, "b": '
    sent = (await standin.arequests())[1]["body"]["messages"]
    validate_messages(sent)
    assert sent[2]["content"] == "Error: RuntimeError: exploded: test"


async def test_a_429_is_retried_then_the_answer_streams(standin: StandIn) -> None:
    await standin.ascript({"status": 429}, {"content": "after the rate limit"})
    events, messages = await run(agent_for(standin))
    assert [r["status"] for r in await standin.arequests()] == [429, 200]
    assert events[-2].type == "done"
    assert messages[-1]["content"] == "after the rate limit"


async def test_5xx_past_the_retry_budget_ends_with_a_clear_error(standin: StandIn) -> None:
    await standin.ascript({"status": 500}, {"status": 503}, {"content": "too late"})
    events, messages = await run(agent_for(standin, max_retries=1))
    assert [r["status"] for r in await standin.arequests()] == [500, 503]
    error = events[-2]
    assert error.type == "error"
    assert error.data["error_type"] == "ModelAPIError"
    assert "HTTP 503 after 2 attempt(s)" in error.data["message"]
    assert "The server had an error" in error.data["message"]
    assert "standin-1" in error.data["message"]
    assert messages[0]["content"] == "hi" and messages[-1]["_error"] is True


async def test_a_malformed_chunk_ends_the_turn_with_an_error_keeping_the_text(
    standin: StandIn,
) -> None:
    await standin.ascript({"content": "Hello world, how are", "split": 5, "malformed_after": 3})
    events, messages = await run(agent_for(standin))
    assert "".join(e.data["text"] for e in of(events, "token")) == "Hello worl"
    assert events[-2].type == "error"
    assert "broke its stream" in events[-2].data["message"]
    assert [m["content"] for m in messages if m.get("_partial")] == ["Hello worl"]


async def test_cancel_closes_the_http_stream_at_once(standin: StandIn) -> None:
    await standin.ascript({"content": "slow " * 200, "split": 5, "delay": 0.05})
    async with Runtime(MemoryStore(), agent_for(standin)) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, "talk slowly")
        async for event in rt.events(stream_id):
            if event.type == "token":
                break
        await rt.cancel(stream_id)
        with anyio.fail_after(3):  # the server sees the client go long before the end
            while (await standin.adisconnects())["disconnects"] < 1:
                await anyio.sleep(0.02)
        messages = (await rt.get_session(s.session_id)).messages
    assert messages[-1]["type"] == "cancelled"
    assert messages[-2]["_partial"] is True and messages[-2]["content"].startswith("slow")


async def test_max_steps_bounds_the_tool_loop(standin: StandIn) -> None:
    call = {"id": "c1", "name": "add", "arguments": '{"a": 1, "b": 1}'}
    await standin.ascript({"tool_calls": [call]}, {"tool_calls": [dict(call, id="c2")]})
    events, messages = await run(agent_for(standin, max_steps=2))
    assert events[-2].data["error_type"] == "StepLimitExceeded"
    assert "max_steps=2" in events[-2].data["message"]
    validate_messages(__import__("runtime").model_messages(messages))


async def test_a_history_with_markers_is_accepted_by_the_strict_server(standin: StandIn) -> None:
    """Turn 1 is cancelled mid-answer; turn 2 sends its history back: the server (which
    refuses private keys and unpaired calls) accepts it and sees the notes."""
    await standin.ascript({"content": "word " * 100, "split": 5, "delay": 0.02})
    store = MemoryStore()
    agent = agent_for(standin)
    async with Runtime(store, agent) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, "first")
        async for event in rt.events(stream_id):
            if event.type == "token":
                break
        await rt.cancel(stream_id)
        await standin.ascript({"content": "second answer"})
        stream_id = await rt.start_turn(s.session_id, "second")
        await rt.wait_stream(stream_id)
    (request,) = await standin.arequests()
    assert request["status"] == 200
    sent = request["body"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"].endswith(
        "[This answer was cut off before it was finished.]\n\n[The user cancelled this turn.]"
    )


async def test_the_standin_refuses_what_the_real_api_refuses(standin: StandIn) -> None:
    call = {"id": "a", "type": "function", "function": {"name": "t", "arguments": "{}"}}
    bad = {
        "unknown key": [{"role": "user", "content": "x", "timestamp": 1.0}],
        "results out of order": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "assistant", "content": None, "tool_calls": [dict(call, id="b")]},
            {"role": "tool", "tool_call_id": "a", "content": "1"},
            {"role": "tool", "tool_call_id": "b", "content": "2"},
        ],
        "name on a tool message": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "a", "name": "t", "content": "1"},
        ],
    }
    async with httpx.AsyncClient() as client:
        for case, messages in bad.items():
            r = await client.post(
                standin.url + "/chat/completions",
                json={"model": "m", "messages": messages, "stream": True},
            )
            assert r.status_code == 400, case
            assert r.json()["error"]["type"] == "invalid_request_error"


def test_function_tool_schema_and_refusals() -> None:
    tool = function_tool(add)
    assert tool.spec()["function"]["description"] == "Add two integers."
    assert tool.parameters["properties"]["a"] == {"type": "integer", "description": "the first."}

    def star(*names: str) -> None:
        """No."""

    with pytest.raises(TypeError, match="parameter 'names' is variadic positional"):
        function_tool(star)
    with pytest.raises(ValueError, match="invalid tool name 'bad name'"):
        FunctionTool(add, name="bad name")
    with pytest.raises(ValueError, match="invalid max_steps 0"):
        openai_chat(model="m", max_steps=0)
    with pytest.raises(ValueError, match="invalid model ''"):
        openai_chat(model="")


async def test_a_refused_request_is_not_retried_and_says_why(standin: StandIn) -> None:
    await standin.ascript({"content": "never sent"})
    events, _ = await run(agent_for(standin, options={"extra_body": {"bogus_field": 1}}))
    assert [r["status"] for r in await standin.arequests()] == [400]
    message = events[-2].data["message"]
    assert "HTTP 400 after 1 attempt(s)" in message
    assert "Unrecognized request argument supplied: bogus_field" in message


async def test_reasoning_under_ollamas_field_name_streams_too(standin: StandIn) -> None:
    await standin.ascript({"reasoning": "hmm", "reasoning_key": "reasoning", "content": "ok"})
    events, _ = await run(agent_for(standin, tools=[]))
    assert "".join(e.data["text"] for e in of(events, "reasoning")) == "hmm"
