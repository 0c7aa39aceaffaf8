"""runtime.adapters.openai_agents.RuntimeSession: the SDK's Session protocol on a store.

The first group mirrors what the OpenAI Agents SDK's own session tests check of every
session (``tests/memory/test_session.py`` upstream: round trips, ``limit``, ``pop_item``,
``clear_session``, isolation, ``SessionSettings``, the ``Runner`` with ``session=``);
the rest checks what the runtime store adds (durability, the chat-completions view,
runtime turns). Stores are real FileStores; the model is the SDK's ``ScriptedModel``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from _support import require

require("agents", "openai-agents")

import anyio  # noqa: E402
import pytest  # noqa: E402
from agents import Agent, RunConfig, Runner, TResponseInputItem  # noqa: E402
from agents.memory import Session, SessionSettings  # noqa: E402
from agents.testing import ScriptedModel, assistant_message  # noqa: E402
from pausing_store import PausingStore  # noqa: E402
from scripted_openai_agents import OFFLINE, weather_agent, weather_model  # noqa: E402

from runtime import (  # noqa: E402
    FileStore,
    InvalidSessionId,
    Runtime,
    SessionBusy,
    Turn,
    model_messages,
)
from runtime.adapters.openai_agents import RuntimeSession  # noqa: E402
from runtime.adapters.openai_agents import agent as adapt  # noqa: E402

HISTORY: list[TResponseInputItem] = [
    {"role": "user", "content": "Message 1"},
    {"role": "assistant", "content": "Response 1"},
    {"role": "user", "content": "Message 2"},
    {"role": "assistant", "content": "Response 2"},
    {"role": "user", "content": "Message 3"},
    {"role": "assistant", "content": "Response 3"},
]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FileStore]:
    async with FileStore(tmp_path) as opened:
        yield opened


def contents(items: list[TResponseInputItem]) -> list[Any]:
    return [item.get("content") for item in items]


# -- the SDK's expectations of a Session -------------------------------------------------


def test_it_is_a_session_by_the_sdks_protocol(store: FileStore) -> None:
    session = RuntimeSession("proto", store)
    assert isinstance(session, Session)
    assert session.session_id == "proto"
    assert isinstance(session.session_settings, SessionSettings)
    assert session.session_settings.limit is None


async def test_add_get_and_clear(store: FileStore) -> None:
    session = RuntimeSession("direct", store)
    await session.add_items(
        [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there!"}]
    )
    assert await session.get_items() == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there!"},
    ]
    await session.clear_session()
    assert await session.get_items() == []
    await session.clear_session()  # clearing an empty session is fine


async def test_pop_item_returns_the_latest_until_empty(store: FileStore) -> None:
    session = RuntimeSession("pop", store)
    assert await session.pop_item() is None
    await session.add_items(HISTORY[:3])
    assert contents(await session.get_items()) == ["Message 1", "Response 1", "Message 2"]
    assert await session.pop_item() == {"role": "user", "content": "Message 2"}
    assert contents(await session.get_items()) == ["Message 1", "Response 1"]
    assert await session.pop_item() == {"role": "assistant", "content": "Response 1"}
    assert await session.pop_item() == {"role": "user", "content": "Message 1"}
    assert await session.pop_item() is None
    assert await session.get_items() == []


async def test_sessions_are_isolated(store: FileStore) -> None:
    one, two = RuntimeSession("session_1", store), RuntimeSession("session_2", store)
    await one.add_items([{"role": "user", "content": "Session 1 message"}])
    await two.add_items(
        [
            {"role": "user", "content": "Session 2 message 1"},
            {"role": "user", "content": "Session 2 message 2"},
        ]
    )
    assert (await two.pop_item() or {}).get("content") == "Session 2 message 2"
    assert contents(await one.get_items()) == ["Session 1 message"]
    assert contents(await two.get_items()) == ["Session 2 message 1"]


async def test_get_items_limit_gives_the_latest_in_order(store: FileStore) -> None:
    session = RuntimeSession("count", store)
    await session.add_items(HISTORY)
    assert len(await session.get_items()) == 6
    assert contents(await session.get_items(limit=2)) == ["Message 3", "Response 3"]
    assert contents(await session.get_items(limit=4)) == [
        "Message 2",
        "Response 2",
        "Message 3",
        "Response 3",
    ]
    assert await session.get_items(limit=10) == HISTORY
    assert await session.get_items(limit=0) == []
    with pytest.raises(ValueError, match="invalid limit -1"):
        await session.get_items(limit=-1)


async def test_session_settings_limit_is_the_default_and_an_explicit_limit_wins(
    store: FileStore,
) -> None:
    items: list[TResponseInputItem] = [
        {"role": "user", "content": f"Message {i}"} for i in range(10)
    ]
    session = RuntimeSession("settings", store, session_settings=SessionSettings(limit=3))
    await session.add_items(items)
    assert contents(await session.get_items()) == ["Message 7", "Message 8", "Message 9"]
    assert contents(await session.get_items(limit=2)) == ["Message 8", "Message 9"]


async def test_unicode_and_special_characters_round_trip(store: FileStore) -> None:
    items: list[TResponseInputItem] = [
        {"role": "user", "content": "こんにちは"},
        {"role": "assistant", "content": "😊👍"},
        {"role": "user", "content": "O'Reilly \"quoted\" Robert'); DROP TABLE students;--"},
        {"role": "assistant", "content": "line\nbreak\ttab \\ backslash \u0000 nul"},
    ]
    session = RuntimeSession("unicode", store)
    await session.add_items(items)
    assert await session.get_items() == items


async def test_concurrent_writers_lose_nothing(store: FileStore) -> None:
    session = RuntimeSession("concurrent", store)
    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(session.add_items, [{"role": "user", "content": f"Message {i}"}])
    assert sorted(contents(await session.get_items())) == sorted(f"Message {i}" for i in range(10))


async def test_runner_keeps_the_conversation_across_runs(store: FileStore) -> None:
    model = ScriptedModel([[assistant_message("San Francisco")], [assistant_message("California")]])
    agent = Agent(name="test", model=model)
    session = RuntimeSession("runner", store)
    first = await Runner.run(
        agent, "What city is the Golden Gate Bridge in?", session=session, run_config=OFFLINE
    )
    assert first.final_output == "San Francisco"
    streamed = Runner.run_streamed(
        agent, "What state is it in?", session=session, run_config=OFFLINE
    )
    async for _ in streamed.stream_events():
        pass
    assert streamed.final_output == "California"
    last = model.last_call
    assert last is not None
    assert last.input[0] == {"role": "user", "content": "What city is the Golden Gate Bridge in?"}
    assert len(last.input) == 3  # question, answer, new question
    assert len(await session.get_items()) == 4


async def test_runner_appends_list_input_to_the_exact_history(store: FileStore) -> None:
    model = ScriptedModel([[assistant_message("This should run")]])
    session = RuntimeSession("list_input", store)
    initial: list[TResponseInputItem] = [
        {"role": "user", "content": "Earlier message"},
        {"role": "assistant", "content": "Saved reply"},
    ]
    await session.add_items(initial)
    new_input: list[TResponseInputItem] = [{"role": "user", "content": "Test message"}]
    await Runner.run(
        Agent(name="test", model=model), new_input, session=session, run_config=OFFLINE
    )
    assert model.last_call is not None and model.last_call.input == initial + new_input


async def test_runner_session_input_callback_and_settings_override(store: FileStore) -> None:
    model = ScriptedModel([[assistant_message("I'm a model")], [assistant_message("Got it")]])
    agent = Agent(name="test", model=model)
    session = RuntimeSession("callback", store, session_settings=SessionSettings(limit=100))
    await session.add_items(HISTORY)

    def users_only(
        history: list[TResponseInputItem], new: list[TResponseInputItem]
    ) -> list[TResponseInputItem]:
        return [item for item in history if item.get("role") == "user"] + new

    question: list[TResponseInputItem] = [{"role": "user", "content": "What is your name?"}]
    config = RunConfig(tracing_disabled=True, session_input_callback=users_only)
    await Runner.run(agent, question, session=session, run_config=config)
    assert model.last_call is not None
    assert model.last_call.input == [HISTORY[0], HISTORY[2], HISTORY[4], question[0]]

    limited = RunConfig(tracing_disabled=True, session_settings=SessionSettings(limit=2))
    await Runner.run(agent, "New question", session=session, run_config=limited)
    assert model.last_call is not None
    history = [item for item in model.last_call.input if item.get("content") != "New question"]
    assert len(history) == 2


# -- what the runtime store adds ----------------------------------------------------------


async def test_items_are_durable_across_a_reopen(tmp_path: Path) -> None:
    items: list[TResponseInputItem] = [
        {"role": "user", "content": "Weather?"},
        {
            "type": "function_call",
            "call_id": "c1",
            "name": "weather",
            "arguments": "{}",
            "id": "fc_1",
        },
        {"type": "function_call_output", "call_id": "c1", "output": "sun"},
    ]
    async with FileStore(tmp_path) as store:
        await RuntimeSession("durable", store).add_items(items)
    async with FileStore(tmp_path) as store:
        session = RuntimeSession("durable", store)
        assert await session.get_items() == items
        await session.clear_session()
    async with FileStore(tmp_path) as store:  # recover() does not bring cleared items back
        assert await RuntimeSession("durable", store).get_items() == []


async def test_writes_racing_a_runtime_turn_never_overwrite_it() -> None:
    """A turn that starts between ``add_items``' load and save makes it ``SessionBusy``;
    one that runs to its end meanwhile makes it load again and append after the turn."""
    store = PausingStore()
    release = anyio.Event()

    async def agent(turn: Turn) -> None:
        if turn.user_message == "held":
            await release.wait()
        await turn.reply(f"re: {turn.user_message}")

    async with Runtime(store, agent) as rt:
        session = RuntimeSession("raced", store)
        await session.add_items(HISTORY[:2])
        for case in ("held", "whole"):
            reached, go = anyio.Event(), anyio.Event()
            store.armed = (reached, go)
            outcome: list[BaseException | None] = []

            async def add(outcome: list[BaseException | None] = outcome) -> None:
                try:
                    await session.add_items([{"role": "user", "content": "from the SDK"}])
                    outcome.append(None)
                except SessionBusy as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(add)
                await reached.wait()
                stream_id = await rt.start_turn("raced", case)
                if case == "whole":
                    await rt.wait_stream(stream_id)
                go.set()
            if case == "held":
                assert len(outcome) == 1 and isinstance(outcome[0], SessionBusy)
                assert (await store.load("raced")).active_stream_id == stream_id
                release.set()
                await rt.wait_stream(stream_id)
            else:
                assert outcome == [None]
        contents = [m["content"] for m in (await rt.get_session("raced")).messages]
    assert contents == [
        "Message 1",
        "Response 1",
        "held",
        "re: held",
        "whole",
        "re: whole",
        "from the SDK",
    ]


async def test_popped_items_stay_popped_after_recover(tmp_path: Path) -> None:
    """``pop_item`` is a deliberate removal: the restart's ``recover()`` must not restore
    the longer list from a backup (a shrinking save keeps one, for accidental shrinks)."""
    async with FileStore(tmp_path) as store:
        session = RuntimeSession("popped", store)
        await session.add_items(HISTORY)
        assert await session.pop_item() == HISTORY[-1]
        assert await session.pop_item() == HISTORY[-2]
    async with FileStore(tmp_path) as store:
        assert dict(await store.recover())["restored"] == 0
        assert await RuntimeSession("popped", store).get_items() == HISTORY[:-2]


async def test_the_store_holds_a_valid_chat_completions_transcript(store: FileStore) -> None:
    """Parallel calls are one assistant message with both calls, followed by their
    results; the exact SDK items ride along under a private key."""
    model = weather_model()
    session = RuntimeSession("transcript", store)
    await Runner.run(
        weather_agent(model), "Weather in Paris and Oslo?", session=session, run_config=OFFLINE
    )
    stored = await store.load("transcript")
    assert [m["role"] for m in stored.messages] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]
    assert stored.messages[1]["content"] == "Checking both."
    assert [c["id"] for c in stored.messages[1]["tool_calls"]] == ["call_par", "call_osl"]
    assert [m["tool_call_id"] for m in stored.messages[2:4]] == ["call_par", "call_osl"]
    sent = model_messages(stored.messages)
    assert all(not key.startswith("_") for m in sent for key in m)
    # popping the second call leaves the first in the same assistant message
    items = await session.get_items()
    osl = next(
        i
        for i, item in enumerate(items)
        if item.get("type") == "function_call" and item["call_id"] == "call_osl"
    )
    for _ in items[osl + 1 :]:
        await session.pop_item()
    assert await session.pop_item() == items[osl]
    stored = await store.load("transcript")
    assert [c["id"] for c in stored.messages[-1]["tool_calls"]] == ["call_par"]


async def test_a_session_written_by_runtime_turns_reads_as_items(tmp_path: Path) -> None:
    model = weather_model()
    async with Runtime(FileStore(tmp_path), adapt(weather_agent(model), run_config=OFFLINE)) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, "Weather in Paris and Oslo?")
        with anyio.fail_after(20):
            [e async for e in rt.events(stream_id)]
        items = await RuntimeSession(s.session_id, rt.store).get_items()
    assert [i.get("type", i.get("role")) for i in items] == [
        "user",
        "assistant",
        "function_call",
        "function_call",
        "function_call_output",
        "function_call_output",
        "assistant",
    ]
    assert [i["call_id"] for i in items if i.get("type") == "function_call_output"] == [
        "call_par",
        "call_osl",
    ]


async def test_writes_wait_for_no_live_turn_and_bad_input_writes_nothing(
    tmp_path: Path,
) -> None:
    release = anyio.Event()

    async def waiting(turn: Turn) -> None:
        await release.wait()

    async with Runtime(FileStore(tmp_path), waiting) as rt:
        s = rt.new_session()
        stream_id = await rt.start_turn(s.session_id, "hold on")
        session = RuntimeSession(s.session_id, rt.store)
        with pytest.raises(SessionBusy):
            await session.add_items([{"role": "user", "content": "sneaking in"}])
        release.set()
        with anyio.fail_after(10):
            [e async for e in rt.events(stream_id)]
        before = await session.get_items()
        with pytest.raises(TypeError, match="must be a dict"):
            await session.add_items([{"role": "user", "content": "ok"}, "not an item"])  # type: ignore[list-item]
        assert await session.get_items() == before
    with pytest.raises(InvalidSessionId):
        RuntimeSession("../etc/passwd", rt.store)
