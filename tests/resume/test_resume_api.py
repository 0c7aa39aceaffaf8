"""Resume through its edges, with real processes: the CLI (``runtime resume``), the HTTP
route (``POST /api/sessions/{id}/resume`` on ``runtime serve``), ``session_status`` and
discard, after a turn was SIGKILLed with ``resume="manual"`` (the default)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from runtime import FileStore, NothingToResume, Runtime

from .agents import draft, draft_then_quiet
from .helpers import (
    ROOT,
    env,
    first_event,
    free_port,
    kill,
    lines,
    serve,
    start_run,
    wait_for_lines,
)

STEPS = "tests/resume/agents.py:steps"


def _killed_turn(tmp_path: Path, environ: dict[str, str], after: int = 3) -> tuple[Path, str]:
    store = tmp_path / "store"
    proc = start_run(store, STEPS, "count", environ)
    session_id = first_event(proc)["session_id"]
    wait_for_lines(tmp_path / "effects", after, proc)
    time.sleep(0.1)  # in the pause after the step: its result is recorded
    kill(proc)
    return store, session_id


def _cli(*args: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_resume_continues_the_turn_and_then_has_nothing_to_resume(tmp_path: Path) -> None:
    environ = env(RESUME_SIDE_EFFECTS=str(tmp_path / "effects"), RESUME_STEPS="6")
    store, session_id = _killed_turn(tmp_path, environ)
    done = _cli(
        "resume", session_id, "--agent", STEPS, "--json", "--store", str(store), environ=environ
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    resumed = [e for e in events if e["type"] == "stream.resumed"]
    assert len(resumed) == 1 and resumed[0]["data"]["attempt"] == 1
    assert events[-1]["type"] == "stream.end" and events[-1]["data"]["outcome"] == "done"
    assert len(set(lines(tmp_path / "effects"))) == 6 == len(lines(tmp_path / "effects"))
    again = _cli("resume", session_id, "--agent", STEPS, "--store", str(store), environ=environ)
    assert again.returncode == 1
    assert "has no interrupted turn to resume" in again.stderr


def test_cli_discard_gives_the_turn_up(tmp_path: Path) -> None:
    environ = env(RESUME_SIDE_EFFECTS=str(tmp_path / "effects"), RESUME_STEPS="6")
    store, session_id = _killed_turn(tmp_path, environ)
    gone = _cli("resume", session_id, "--discard", "--store", str(store), environ=environ)
    assert gone.returncode == 0, gone.stderr
    both = _cli(
        "resume", session_id, "--discard", "--agent", STEPS, "--store", str(store), environ=environ
    )
    assert both.returncode == 2 and "exactly one of" in both.stderr

    async def check() -> None:
        async with Runtime(FileStore(store), lambda turn: None) as rt:  # type: ignore[arg-type,return-value]
            status = await rt.session_status(session_id)
            assert status["interrupted"] is None and status["active_stream_id"] is None
            with pytest.raises(NothingToResume):
                await rt.resume(session_id)
            session = await rt.get_session(session_id)
            assert session.messages[-1]["type"] == "interrupted"

    import anyio

    anyio.run(check)
    assert len(lines(tmp_path / "effects")) == 3  # nothing ran after the kill


def test_http_resume_route(tmp_path: Path) -> None:
    environ = env(
        RESUME_SIDE_EFFECTS=str(tmp_path / "effects"), RESUME_STEPS="6", RESUME_STEP_DELAY="0.4"
    )
    store, session_id = _killed_turn(tmp_path, environ)
    port = free_port()
    server = serve(store, STEPS, port, tmp_path / "server.log", environ, resume="manual")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            status = client.get(f"/api/sessions/{session_id}/status").json()
            assert status["interrupted"]["attempt"] == 0
            assert status["interrupted"]["attempts_left"] == 3
            stream_id = status["interrupted"]["stream_id"]
            r = client.post(f"/api/sessions/{session_id}/resume")
            assert r.status_code == 202, r.text
            assert r.json() == {"stream_id": stream_id, "session_id": session_id}
            assert r.headers["location"] == f"/api/streams/{stream_id}/events"
            busy = client.post(f"/api/sessions/{session_id}/resume")
            assert busy.status_code == 409 and busy.json()["error"] == "session_busy"
            # the AI SDK's resume route replays the active turn: the resume is a data part
            with client.stream("GET", f"/api/chat/{session_id}/stream") as chat:
                chunks = [
                    json.loads(line[6:]) for line in chat.iter_lines() if line.startswith("data: {")
                ]
            marks = [c for c in chunks if c["type"] == "data-stream-resumed"]
            assert len(marks) == 1 and marks[0]["data"]["attempt"] == 1
            assert chunks[-1] == {"type": "finish", "finishReason": "stop"}
            with client.stream("GET", r.headers["location"]) as events:
                body = "".join(events.iter_text())
            assert "event: stream.resumed" in body and "event: stream.end" in body
            nothing = client.post(f"/api/sessions/{session_id}/resume")
            assert nothing.status_code == 409 and nothing.json()["error"] == "nothing_to_resume"
            missing = client.post("/api/sessions/nosuchsession/resume")
            assert missing.status_code == 404
            bad = client.post("/api/sessions/bad%20id/resume")
            assert bad.status_code == 400
    finally:
        kill(server)
    assert lines(tmp_path / "effects") == [f"step-{i}" for i in range(1, 7)]


def _killed_mid_stream(tmp_path: Path, agent: str) -> tuple[Path, str]:
    """A turn of ``agent`` SIGKILLed once a checkpoint holds a few tokens of its draft."""
    store = tmp_path / "store"
    proc = start_run(store, agent, "write", env())
    assert proc.stdout is not None
    tokens = 0
    while True:
        event = json.loads(proc.stdout.readline())
        tokens += event["type"] == "token"
        if event["type"] == "checkpoint" and tokens >= 3:
            break
    kill(proc)
    return store, str(event["session_id"])


def test_a_resume_after_a_repair_is_not_undone_by_recover(tmp_path: Path) -> None:
    """A turn killed mid-stream, repaired by a read (its draft kept as partial, a
    marker added), then resumed: the resume drops the draft and the marker on purpose,
    so the finished turn (shorter than the repaired state) must not be replaced by that
    state when the next start runs ``recover()``."""
    store, session_id = _killed_mid_stream(tmp_path, "tests/resume/agents.py:draft")

    async def repair_resume_restart() -> tuple[int, list[Any], int, list[Any]]:
        async with Runtime(FileStore(store), draft) as rt:
            repaired = await rt.get_session(session_id)  # closes the dead turn
            assert repaired.messages[-1].get("type") == "interrupted"
            await rt.wait_stream(await rt.resume(session_id))
            final = (await rt.get_session(session_id)).messages
        async with FileStore(store) as restarted:
            report = await restarted.recover()
            after = (await restarted.load(session_id)).messages
        return len(repaired.messages), final, report["restored"], after

    repaired, final, restored, after = anyio.run(repair_resume_restart)
    assert [m["role"] for m in final] == ["user", "assistant"]
    assert final[-1]["content"] == "".join(f"t{i} " for i in range(40))
    assert len(final) < repaired  # the case where a backup would win at recover()
    assert restored == 0
    assert after == final


def test_a_resumed_turn_without_new_text_is_not_undone_by_recover(tmp_path: Path) -> None:
    """A resumed attempt that streams no text again gives up the dead draft's place in
    its final save: that shrink is meant, so the next start's ``recover()`` must not put
    the running state (with the place and the pending turn) back."""
    store, session_id = _killed_mid_stream(tmp_path, "tests/resume/agents.py:draft_then_quiet")

    async def resume_restart() -> tuple[list[Any], int, list[Any], str | None]:
        async with Runtime(FileStore(store), draft_then_quiet) as rt:
            await rt.wait_stream(await rt.resume(session_id))
            final = (await rt.get_session(session_id)).messages
        async with FileStore(store) as restarted:
            report = await restarted.recover()
            loaded = await restarted.load(session_id)
        return final, report["restored"], loaded.messages, loaded.active_stream_id

    final, restored, after, active = anyio.run(resume_restart)
    assert [m["role"] for m in final] == ["user"]
    assert restored == 0
    assert after == final and active is None
