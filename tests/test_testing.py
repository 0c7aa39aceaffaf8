"""runtime.testing's scripted agents, run by the real Runtime on a MemoryStore.

(The store conformance part of runtime.testing is tested in tests/stores/.)
"""

from __future__ import annotations

import anyio
import pytest

from runtime import MemoryStore, Runtime, Turn
from runtime.testing import (
    AddMessage,
    Notify,
    Raise,
    Reasoning,
    Reply,
    Run,
    SetTitle,
    Sleep,
    Token,
    Tool,
    Usage,
    WaitFor,
    scripted_agent,
)


async def _run_turn(agent: object, text: str = "question") -> tuple[list[str], list[dict], object]:
    async with Runtime(MemoryStore(), agent) as rt:  # type: ignore[arg-type]
        session = rt.new_session(title="t")
        stream_id = await rt.start_turn(session.session_id, text)
        events = [e async for e in rt.events(stream_id)]
        await rt.wait_stream(stream_id)
        stored = await rt.get_session(session.session_id)
    return [e.type for e in events], [e.data for e in events], stored


async def test_every_step_kind_reaches_the_stream_and_the_session() -> None:
    async def custom(turn: Turn) -> None:
        await turn.token("custom ")

    agent = scripted_agent(
        [
            Reasoning("plan"),
            "Searching… ",
            Token("still "),
            Tool("grep", {"pattern": "TaskGroup"}, result={"hits": 12}),
            Run(custom),
            Reply("Found 12."),
            AddMessage({"role": "assistant", "content": "extra"}),
            SetTitle("stdlib survey"),
            Usage(prompt_tokens=3, completion_tokens=4),
        ]
    )
    types, data, stored = await _run_turn(agent)
    assert types == [
        "stream.started",
        "reasoning",
        "token",
        "token",
        "tool.started",
        "tool.completed",
        "token",
        "token",
        "message",
        "message",
        "title",
        "usage",
        "done",
        "stream.end",
    ]
    completed = data[types.index("tool.completed")]
    assert completed["result"] == {"hits": 12}
    assert completed["error"] is None
    assert data[types.index("usage")] == {"prompt_tokens": 3, "completion_tokens": 4}
    messages = stored.messages  # type: ignore[attr-defined]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "assistant"]
    assert messages[1]["content"] == "Searching… still "
    assert messages[1]["tool_calls"][0]["function"]["name"] == "grep"
    assert messages[3]["content"] == "custom Found 12."
    assert stored.title == "stdlib survey"  # type: ignore[attr-defined]


async def test_a_raise_step_ends_the_turn_with_error() -> None:
    agent = scripted_agent(["partial ", Raise(RuntimeError("boom"))])
    types, data, stored = await _run_turn(agent)
    assert types[-2:] == ["error", "stream.end"]
    assert data[-2]["message"] == "boom"
    errors = [m for m in stored.messages if m.get("_error")]  # type: ignore[attr-defined]
    assert len(errors) == 1


async def test_a_failing_tool_propagates_unless_caught() -> None:
    failing = scripted_agent([Tool("t", error=ValueError("bad input"))])
    types, data, _ = await _run_turn(failing)
    assert data[types.index("tool.completed")]["error"] == "ValueError: bad input"
    assert types[-2:] == ["error", "stream.end"]

    caught = scripted_agent([Tool("t", error=ValueError("bad input"), catch=True), Reply("ok")])
    types, data, stored = await _run_turn(caught)
    assert data[types.index("tool.completed")]["error"] == "ValueError: bad input"
    assert types[-2:] == ["done", "stream.end"]
    assert stored.messages[-1]["content"] == "ok"  # type: ignore[attr-defined]


async def test_notify_and_wait_for_hold_the_agent_without_timing() -> None:
    reached, release = anyio.Event(), anyio.Event()
    agent = scripted_agent(["a", Notify(reached), WaitFor(release), Reply("b")])
    async with Runtime(MemoryStore(), agent) as rt:
        session = rt.new_session(title="t")
        stream_id = await rt.start_turn(session.session_id, "go")
        await reached.wait()
        assert rt.is_live(stream_id)
        status = await rt.session_status(session.session_id)
        assert status["active_stream_id"] == stream_id
        release.set()
        await rt.wait_stream(stream_id)
        assert not rt.is_live(stream_id)
        assert (await rt.get_session(session.session_id)).messages[-1]["content"] == "ab"


async def test_sleep_step_is_cancellable() -> None:
    reached = anyio.Event()
    agent = scripted_agent(["partial", Notify(reached), Sleep(3600)])
    async with Runtime(MemoryStore(), agent) as rt:
        session = rt.new_session(title="t")
        stream_id = await rt.start_turn(session.session_id, "go")
        await reached.wait()
        assert await rt.cancel(stream_id)
        types = [e.type async for e in rt.events(stream_id)]
        assert types[-2:] == ["cancelled", "stream.end"]


async def test_turns_are_recorded_and_the_script_replays() -> None:
    agent = scripted_agent([AddMessage({"role": "assistant", "content": "same"})])
    async with Runtime(MemoryStore(), agent) as rt:
        session = rt.new_session(title="t")
        for text in ("one", "two"):
            await rt.wait_stream(await rt.start_turn(session.session_id, text))
        stored = await rt.get_session(session.session_id)
    assert [t.user_message for t in agent.turns] == ["one", "two"]
    assert agent.turns[0].history == []
    assert [m["content"] for m in agent.turns[1].history] == ["one", "same"]
    assert {t.session_id for t in agent.turns} == {session.session_id}
    assert len({t.stream_id for t in agent.turns}) == 2
    assert [m["content"] for m in stored.messages] == ["one", "same", "two", "same"]
    # each replay got its own copy of the scripted message
    assert stored.messages[1] is not stored.messages[3]


def test_a_bad_step_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"invalid script step 42"):
        scripted_agent(["ok", 42])  # type: ignore[list-item]
