"""The agent API for LLM tool loops: the model's call ids, parallel calls as one group,
failing tools, and a transcript the Chat Completions API accepts when sent back (checked
with the strict validator of the stand-in server, ``chat_standin.validate_messages``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from chat_standin import validate_messages

from runtime import Event, EventType, FileStore, MemoryStore, Runtime, Turn, model_messages


async def run(agent: Any, store: Any = None, text: str = "go") -> tuple[list[Event], list[Any]]:
    store = MemoryStore() if store is None else store
    async with Runtime(store, agent, checkpoint_interval=0.05) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, text)
        events = [e async for e in rt.events(stream_id)]
        full = await rt.get_session(s.session_id)
    return events, full.messages


def shape(messages: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for m in messages:
        if m.get("tool_calls"):
            out.append((m["role"], [c["id"] for c in m["tool_calls"]]))
        else:
            out.append((m["role"], m.get("tool_call_id") or m.get("content")))
    return out


async def test_tool_keeps_the_models_call_id() -> None:
    async def agent(turn: Turn) -> None:
        async with turn.tool("lookup", '{"q": "x"}', call_id="call_model_7") as call:
            assert call.arguments == {"q": "x"}
            call.result = {"hits": 3}
        await turn.reply("3 hits")

    events, messages = await run(agent)
    assert shape(messages) == [
        ("user", "go"),
        ("assistant", ["call_model_7"]),
        ("tool", "call_model_7"),
        ("assistant", "3 hits"),
    ]
    assert messages[1]["tool_calls"][0]["function"] == {
        "name": "lookup",
        "arguments": '{"q": "x"}',  # the model's string, as it was
    }
    started = next(e for e in events if e.type == EventType.TOOL_STARTED)
    assert started.data == {"call_id": "call_model_7", "name": "lookup", "arguments": {"q": "x"}}
    completed = next(e for e in events if e.type == "tool.completed")
    assert completed.data["call_id"] == "call_model_7"
    assert completed.data["result"] == {"hits": 3}
    validate_messages(model_messages(messages))


async def test_parallel_calls_form_one_group_in_call_order_however_they_finish() -> None:
    """b finishes first, then c, then a: the transcript still lists a, b, c, and their
    results follow the single assistant message in that order."""
    order = [anyio.Event() for _ in range(3)]

    async def agent(turn: Turn) -> None:
        await turn.token("Checking three things. ")
        calls = [await turn.start_tool("t", {"n": n}, call_id=f"call_{n}") for n in ("a", "b", "c")]

        async def work(i: int, gate: anyio.Event, then: anyio.Event | None) -> None:
            await gate.wait()
            await calls[i].finish({"n": i})
            if then is not None:
                then.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(work, 0, order[2], None)  # a last
            tg.start_soon(work, 1, order[0], order[1])  # b first
            tg.start_soon(work, 2, order[1], order[2])  # then c
            order[0].set()
        await turn.reply("done")

    events, messages = await run(agent)
    assert shape(messages) == [
        ("user", "go"),
        ("assistant", ["call_a", "call_b", "call_c"]),
        ("tool", "call_a"),
        ("tool", "call_b"),
        ("tool", "call_c"),
        ("assistant", "done"),
    ]
    assert messages[1]["content"] == "Checking three things. "
    completed = [e.data["call_id"] for e in events if e.type == "tool.completed"]
    assert completed == ["call_b", "call_c", "call_a"]  # events follow time
    validate_messages(model_messages(messages))


async def test_blocks_open_at_once_in_tasks_form_one_group() -> None:
    entered = anyio.Event()
    inside = 0

    async def agent(turn: Turn) -> None:
        async def one(name: str, seconds: float) -> None:
            nonlocal inside
            async with turn.tool(name, {"s": seconds}) as call:
                inside += 1
                if inside == 2:
                    entered.set()
                await entered.wait()
                await anyio.sleep(seconds)
                call.result = name

        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "slow", 0.2)
            tg.start_soon(one, "fast", 0.0)
        await turn.reply("ok")

    _, messages = await run(agent)
    names = [c["function"]["name"] for c in messages[1]["tool_calls"]]
    assert names == ["slow", "fast"]
    assert [m["content"] for m in messages[2:4]] == ["slow", "fast"]
    validate_messages(model_messages(messages))


async def test_sequential_calls_are_separate_groups() -> None:
    async def agent(turn: Turn) -> None:
        for n in range(2):
            async with turn.tool("step", {"n": n}) as call:
                call.result = n
        await turn.reply("two steps")

    _, messages = await run(agent)
    assert [m["role"] for m in messages] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]


async def test_a_tool_that_raises_gives_an_error_result_and_the_turn_goes_on() -> None:
    async def agent(turn: Turn) -> None:
        async with turn.tool("read", {"path": "/nope"}, call_id="call_r") as call:
            raise FileNotFoundError("no such file: /nope")
        assert call.error == "FileNotFoundError: no such file: /nope"
        assert isinstance(call.exception, FileNotFoundError)
        await turn.reply("That file does not exist.")

    events, messages = await run(agent)
    assert events[-2].type == "done"
    tool = messages[2]
    assert tool["content"] == "Error: FileNotFoundError: no such file: /nope"
    assert tool["_error"] is True
    completed = next(e for e in events if e.type == "tool.completed")
    assert completed.data["error"] == "FileNotFoundError: no such file: /nope"
    assert completed.data["result"] is None
    sent = model_messages(messages)
    validate_messages(sent)
    assert sent[2] == {
        "role": "tool",
        "tool_call_id": "call_r",
        "content": "Error: FileNotFoundError: no such file: /nope",
    }


async def test_fail_and_finish_complete_once() -> None:
    async def agent(turn: Turn) -> None:
        call = await turn.start_tool("t")
        await call.fail("quota exceeded")
        with pytest.raises(RuntimeError, match="already completed"):
            await call.finish("late")
        await turn.reply("no")

    _, messages = await run(agent)
    assert messages[2]["content"] == "Error: quota exceeded"


async def test_bad_calls_are_refused_and_nothing_is_written() -> None:
    async def agent(turn: Turn) -> None:
        await turn.start_tool("t", call_id="call_1")
        with pytest.raises(ValueError, match=r"call_id 'call_1'.*already used"):
            await turn.start_tool("t", call_id="call_1")
        with pytest.raises(ValueError, match="invalid call_id ''"):
            await turn.start_tool("t", call_id="")
        with pytest.raises(TypeError, match="invalid arguments 5 of tool call 't'"):
            await turn.start_tool("t", 5)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="'when'"):
            await turn.start_tool("t", {"when": object()})
        with pytest.raises(RuntimeError, match="call_1 are running"):
            await turn.reply("too early")
        with pytest.raises(RuntimeError, match="call_1 are running"):
            await turn.add_message({"role": "assistant", "content": "x"})

    events, messages = await run(agent)
    # the call left running when the agent returned got a result: the transcript is valid
    assert shape(messages) == [("user", "go"), ("assistant", ["call_1"]), ("tool", "call_1")]
    assert messages[2]["content"] == "Error: the turn ended before the call completed"
    assert [e.type for e in events].count("tool.started") == 1
    validate_messages(model_messages(messages))


async def test_cancel_while_parallel_calls_run_keeps_a_valid_transcript(tmp_path: Path) -> None:
    inside = anyio.Event()

    async def agent(turn: Turn) -> None:
        entered = anyio.Event()

        async def one(call_id: str) -> None:
            async with turn.tool("wait", call_id=call_id):
                entered.set()
                await anyio.sleep(60)

        await turn.token("Let me wait. ")
        a = await turn.start_tool("quick", call_id="call_q")
        async with anyio.create_task_group() as tg:
            tg.start_soon(one, "call_w")
            await entered.wait()  # both calls have started: one group
            await a.finish("quick result")
            inside.set()
            await anyio.sleep(60)

    async with Runtime(FileStore(tmp_path), agent) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, "go")
        await inside.wait()
        await rt.cancel(stream_id)
        messages = (await rt.get_session(s.session_id)).messages
    assert shape(messages) == [
        ("user", "go"),
        ("assistant", ["call_q", "call_w"]),
        ("tool", "call_q"),
        ("tool", "call_w"),
        ("assistant", "Turn cancelled."),
    ]
    assert messages[3]["content"] == "Error: cancelled"
    sent = model_messages(messages)
    validate_messages(sent)
    assert sent[-1] == {"role": "assistant", "content": "[The user cancelled this turn.]"}


async def test_model_messages_inside_the_turn_is_what_a_model_may_be_sent_next() -> None:
    seen: list[list[dict[str, Any]]] = []

    async def agent(turn: Turn) -> None:
        seen.append(turn.model_messages())
        await turn.token("thinking out loud")  # still streaming: not sent back
        seen.append(turn.model_messages())
        async with turn.tool("t", call_id="c1") as call:
            call.result = "r"
        seen.append(turn.model_messages())
        await turn.reply("final")

    history = [
        {"role": "user", "content": "earlier", "timestamp": 1.0},
        {"role": "assistant", "content": "earlier answer", "timestamp": 2.0},
    ]
    store = MemoryStore()
    async with Runtime(store, agent) as rt:
        s = rt.new_session()
        s.messages.extend(history)
        await store.save(s)
        stream_id = await rt.start_turn(s.session_id, "now")
        await rt.wait_stream(stream_id)
    first = [
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "earlier answer"},
    ]
    assert seen[0] == [*first, {"role": "user", "content": "now"}]
    assert seen[1] == seen[0]
    assert seen[2][3:] == [
        {
            "role": "assistant",
            "content": "thinking out loud",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "t", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
    ]
    for messages in seen:
        validate_messages(messages)


async def test_agent_facing_surface_has_no_runner_internals() -> None:
    names: set[str] = set()

    async def agent(turn: Turn) -> None:
        names.update(n for n in dir(turn) if not n.startswith("_"))

    await run(agent)
    assert {"activity", "closed", "materialize_partial"}.isdisjoint(names)
    assert {"tool", "start_tool", "model_messages", "token", "reply"} <= names


async def test_event_types_and_outcome_are_typed() -> None:
    async def agent(turn: Turn) -> None:
        await turn.usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)
        with pytest.raises(TypeError, match="completion_tokens='4'"):
            await turn.usage(completion_tokens="4")  # type: ignore[arg-type]

    events, _ = await run(agent)
    assert all(isinstance(e.type, EventType) for e in events)
    usage = next(e for e in events if e.type is EventType.USAGE)
    assert usage.data == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert events[-1].data == {"outcome": "done"}


async def test_text_json_cannot_carry_from_a_model_never_loses_the_turn(tmp_path: Path) -> None:
    """A model's arguments, name, id or an error text with a lone surrogate are kept
    escaped, so the final save (real files) still succeeds."""

    async def agent(turn: Turn) -> None:
        call = await turn.start_tool("t\ud800", '{"q": "\ud800"}', call_id="c\udfff")
        await call.fail("bad \ud800 input")
        await turn.reply("ok")

    events, messages = await run(agent, FileStore(tmp_path))
    assert events[-2].type == "done"
    assert messages[1]["tool_calls"][0]["function"]["arguments"] == '{"q": "\\ud800"}'
    assert messages[2]["content"] == "Error: bad \\ud800 input"
    validate_messages(model_messages(messages))
