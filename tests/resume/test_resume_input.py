"""Bad input to the resume API is refused with an error naming the value and the rule,
before anything is written; a session with nothing to resume says so."""

from __future__ import annotations

from typing import Any

import pytest

from runtime import (
    InvalidSessionId,
    MemoryStore,
    NothingToResume,
    Runtime,
    SessionNotFound,
    Tool,
    Turn,
)


async def _reply(turn: Turn) -> None:
    await turn.reply("ok")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"resume": "always"}, "invalid resume 'always': must be 'manual' or 'auto'"),
        ({"max_resume_attempts": -1}, "invalid max_resume_attempts -1: must be an integer >= 0"),
        ({"max_resume_attempts": 1.5}, "invalid max_resume_attempts 1.5"),
        ({"resume_backoff": 0}, "invalid resume_backoff 0: must be a finite number of seconds"),
    ],
)
def test_runtime_refuses_bad_resume_settings(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Runtime(MemoryStore(), _reply, **options)


def test_tool_refuses_what_it_cannot_call() -> None:
    with pytest.raises(TypeError, match="invalid fn 1: must be callable"):
        Tool(1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="invalid reconcile 'x': must be callable"):
        Tool(_reply, reconcile="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid tool name '': must be a non-empty string"):
        Tool(_reply, name="")


async def test_resume_refuses_bad_input_and_a_finished_turn() -> None:
    store = MemoryStore()
    async with Runtime(store, _reply) as rt:
        with pytest.raises(InvalidSessionId, match="invalid session id 'bad id'"):
            await rt.resume("bad id")
        with pytest.raises(SessionNotFound):
            await rt.resume("nosuchsession")
        session = rt.new_session()
        stream_id = await rt.start_turn(session.session_id, "hi")
        await rt.wait_stream(stream_id)
        with pytest.raises(ValueError, match="invalid config 'x': must be a dict or None"):
            await rt.resume(session.session_id, config="x")  # type: ignore[arg-type]
        with pytest.raises(NothingToResume, match="has no interrupted turn to resume"):
            await rt.resume(session.session_id)
        assert await rt.discard(session.session_id) is False
        status = await rt.session_status(session.session_id)
        assert status["interrupted"] is None
        stored = await rt.get_session(session.session_id)
        assert "runtime.resume" not in stored.metadata  # the record ends with the turn
        assert [m["role"] for m in stored.messages] == ["user", "assistant"]
