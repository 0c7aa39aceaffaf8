"""The ``runtime`` command line, end to end: every test runs ``python -m runtime`` as a real
subprocess on a FileStore root under ``tmp_path`` (``$RUNTIME_HOME`` or ``--store``).

Agents: ``examples/echo_agent.py`` and the small agents in ``tests/cli_agents.py``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from runtime import FileStore, Session

ROOT = Path(__file__).resolve().parents[1]  # the checkout: runtime/ and examples/ live here
ECHO = "examples/echo_agent.py:agent"
AGENTS = ROOT / "tests" / "cli_agents.py"
ADMIN_FILES = {"_README", "_lock", "_index.jsonl"}


def env_for(home: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNTIME_HOME": str(home), "COLUMNS": "200"}
    env.pop("PYTHONSTARTUP", None)
    return env


def cli(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m runtime ARGS`` from the checkout root with ``RUNTIME_HOME=home``."""
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        cwd=ROOT,
        env=env_for(home),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"exit {done.returncode}\nstdout: {done.stdout}\n{done.stderr}"
    return done


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (and nothing on stdout)."""
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{done.stderr}"
    assert done.stdout == ""
    assert lines[0].startswith("runtime: error: "), lines[0]
    return lines[0]


def json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def run_json(home: Path, *args: str) -> tuple[str, list[dict[str, Any]]]:
    """``run --json``: the session id and the events."""
    events = json_lines(ok(cli(home, "run", *args, "--json")).stdout)
    return events[0]["session_id"], events


def show(home: Path, session_id: str) -> dict[str, Any]:
    done = ok(cli(home, "sessions", "show", session_id, "--json"))
    lines = json_lines(done.stdout)
    assert len(lines) == 1
    session: dict[str, Any] = lines[0]
    return session


def session_files(home: Path) -> set[str]:
    return {p.name for p in (home / "sessions").iterdir()} - ADMIN_FILES


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


# -- run -------------------------------------------------------------------------------


def test_run_prints_the_reply(home: Path) -> None:
    done = ok(cli(home, "run", ECHO, "hi there"))
    assert done.stdout.strip() == "hi there"
    m = re.search(r"session ([0-9a-f]{32}) \(done\)", done.stderr)
    assert m, done.stderr
    session = show(home, m.group(1))
    assert session["title"] == "hi there"
    assert [(x["role"], x["content"]) for x in session["messages"]] == [
        ("user", "hi there"),
        ("assistant", "hi there"),
    ]
    assert session["active_stream_id"] is None
    assert session["pending_user_message"] is None


def test_run_json_prints_one_event_per_line(home: Path) -> None:
    sid, events = run_json(home, ECHO, "one two three")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["session_id"] for e in events} == {sid}
    assert len({e["stream_id"] for e in events}) == 1
    types = [e["type"] for e in events]
    assert types[0] == "stream.started"
    assert types[-2:] == ["done", "stream.end"]
    assert events[-1]["data"]["outcome"] == "done"
    assert "".join(e["data"]["text"] for e in events if e["type"] == "token") == "one two three"
    assert show(home, sid)["message_count"] == 2


def test_run_with_store_option_and_session_continues(tmp_path: Path, home: Path) -> None:
    store = tmp_path / "elsewhere"
    sid, _ = run_json(home, ECHO, "first", "--store", str(store))
    _, events = run_json(home, ECHO, "second", "--session", sid, "--store", str(store))
    assert {e["session_id"] for e in events} == {sid}
    assert not home.exists(), "--store must be used instead of $RUNTIME_HOME"

    session = show(store, sid)  # RUNTIME_HOME=store for this call
    assert [(x["role"], x["content"]) for x in session["messages"]] == [
        ("user", "first"),
        ("assistant", "first"),
        ("user", "second"),
        ("assistant", "second"),
    ]
    assert session_files(store) >= {f"{sid}.json"}


def test_agent_error_exits_1_and_keeps_partial_output(home: Path) -> None:
    done = cli(home, "run", f"{AGENTS}:failing_agent", "go", "--json")
    assert done.returncode == 1, done.stderr
    events = json_lines(done.stdout)
    assert [e["type"] for e in events][-2:] == ["error", "stream.end"]
    assert events[-2]["data"]["message"] == "boom in agent"
    messages = show(home, events[0]["session_id"])["messages"]
    assert messages[0]["content"] == "go"
    assert [m["content"] for m in messages if m.get("_partial")] == ["before the failure "]
    errors = [m for m in messages if m.get("_error")]
    assert len(errors) == 1
    assert "boom in agent" in errors[0]["content"]


# -- bad input: one line on stderr, non-zero, nothing written ---------------------------

BAD_AGENTS = {
    "missing-file": "examples/no_such_agent.py:agent",
    "missing-function": "examples/echo_agent.py:no_such_function",
    "no-colon": "examples/echo_agent.py",
    "empty-function": "examples/echo_agent.py:",
    "missing-module": "no_such_module_zz:agent",
    "not-async": f"{AGENTS}:sync_agent",
}


@pytest.mark.parametrize("spec", list(BAD_AGENTS.values()), ids=list(BAD_AGENTS))
def test_bad_agent_spec(home: Path, spec: str) -> None:
    line = one_error_line(cli(home, "run", spec, "hi"))
    assert repr(spec) in line
    assert not home.exists(), "a bad agent spec must write nothing"


INVALID_INPUT = {
    "run-session": ("run", ECHO, "hi", "--session", "../etc/passwd"),
    "run-session-too-long": ("run", ECHO, "hi", "--session", "a" * 65),
    "show": ("sessions", "show", "bad id!"),
    "empty-prompt": ("run", ECHO, "   "),
}


@pytest.mark.parametrize("args", list(INVALID_INPUT.values()), ids=list(INVALID_INPUT))
def test_invalid_input_exits_2_and_creates_nothing(home: Path, args: tuple[str, ...]) -> None:
    done = cli(home, *args)
    line = one_error_line(done)
    assert done.returncode == 2
    assert "invalid" in line
    assert not home.exists(), "invalid input must not create the store directory"


@pytest.mark.parametrize(
    "args",
    [("run", ECHO, "hi", "--session", "nosuchsession"), ("sessions", "show", "nosuchsession")],
    ids=["run", "show"],
)
def test_unknown_session_id(home: Path, args: tuple[str, ...]) -> None:
    line = one_error_line(cli(home, *args))
    assert "'nosuchsession'" in line
    assert "no session" in line
    assert not home.exists() or session_files(home) == set()


# -- sessions list / show / recover -----------------------------------------------------


def add_sessions(root: Path) -> tuple[str, str]:
    """Save an empty "Untitled" session and an empty titled one, in this process."""

    async def main() -> tuple[str, str]:
        async with FileStore(root) as store:
            untitled, named = Session(), Session(title="Named")
            await store.save(untitled)
            await store.save(named)
            return untitled.session_id, named.session_id

    return anyio.run(main)


def test_sessions_list_hides_empty_untitled(home: Path) -> None:
    sid, _ = run_json(home, ECHO, "listed turn")
    untitled, named = add_sessions(home)
    assert f"{untitled}.json" in session_files(home)

    page = json_lines(ok(cli(home, "sessions", "list", "--json")).stdout)
    assert len(page) == 1
    rows = {r["session_id"]: r for r in page[0]["sessions"]}
    assert set(rows) == {sid, named}
    assert rows[sid]["message_count"] == 2
    assert rows[sid]["title"] == "listed turn"
    assert page[0]["next_cursor"] is None

    text = ok(cli(home, "sessions", "list")).stdout
    assert sid in text
    assert named in text
    assert untitled not in text
    assert "listed turn" in text


def test_sessions_show_text_transcript(home: Path) -> None:
    sid, _ = run_json(home, ECHO, "show me")
    text = ok(cli(home, "sessions", "show", sid)).stdout
    assert text.startswith(f"show me  ({sid}, 2 messages")
    assert "── user" in text
    assert "── assistant" in text
    assert text.count("show me") == 3  # the title, the user message, the reply


def test_sessions_recover_prints_the_report(home: Path) -> None:
    sid, _ = run_json(home, ECHO, "kept")
    orphan = Session("orphan42", title="orphan", messages=[{"role": "user", "content": "x"}])
    (home / "sessions" / "orphan42.json.bak").write_bytes(orjson.dumps(orphan.to_dict()))

    report = json_lines(ok(cli(home, "sessions", "recover", "--json")).stdout)
    assert report == [{"scanned": 2, "restored": 1, "orphaned_backups": 1, "quarantined": 0}]
    assert show(home, "orphan42")["messages"] == [{"role": "user", "content": "x"}]

    again = json_lines(ok(cli(home, "sessions", "recover", "--json")).stdout)
    assert again == [{"scanned": 2, "restored": 0, "orphaned_backups": 0, "quarantined": 0}]
    text = ok(cli(home, "sessions", "recover")).stdout
    assert text.strip() == "scanned 2 sessions, restored 0, recreated 0 from orphan backups"
    assert show(home, sid)["message_count"] == 2


# -- Ctrl-C ----------------------------------------------------------------------------


def test_ctrl_c_cancels_and_keeps_partial_output(home: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "run", f"{AGENTS}:slow_agent", "count", "--json"],
        cwd=ROOT,
        env=env_for(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        seen: list[dict[str, Any]] = []
        while sum(e["type"] == "token" for e in seen) < 3:
            line = proc.stdout.readline()
            assert line, "the agent stopped before streaming 3 tokens"
            seen.append(orjson.loads(line))
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        # through the same buffered file objects: communicate() would skip what
        # readline() already buffered
        rest = proc.stdout.read()
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    events = seen + json_lines(rest)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events][-2:] == ["cancelled", "stream.end"]
    assert events[-1]["data"]["outcome"] == "cancelled"
    streamed = "".join(e["data"]["text"] for e in events if e["type"] == "token")
    assert streamed.startswith("tok0 tok1 tok2 ")
    assert "tok299" not in streamed

    sid = events[0]["session_id"]
    session = show(home, sid)
    messages = session["messages"]
    assert messages[0] == {**messages[0], "role": "user", "content": "count"}
    partial = [m for m in messages if m.get("_partial")]
    assert len(partial) == 1
    assert partial[0]["role"] == "assistant"
    assert partial[0]["content"] == streamed
    assert len([m for m in messages if m.get("type") == "cancelled"]) == 1
    assert session["active_stream_id"] is None
    assert session["pending_user_message"] is None

    # a new turn can start at once on the same session
    _, events = run_json(home, ECHO, "after cancel", "--session", sid)
    assert events[-1]["data"]["outcome"] == "done"
    assert show(home, sid)["messages"][-1]["content"] == "after cancel"


def test_run_into_a_closed_pipe_finishes_the_turn_without_a_traceback(home: Path) -> None:
    """``runtime run --json … | head -1``: the reader leaves after one line; the turn
    still runs to its end and is saved, and nothing but the line is printed."""
    command = (
        f"{sys.executable} -m runtime run --json {AGENTS}:chatty_agent go | head -1; "
        "echo exit=${PIPESTATUS[0]}"
    )
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        env=env_for(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stderr == "", done.stderr
    first, status = done.stdout.strip().splitlines()
    assert status == "exit=0"
    sid = orjson.loads(first)["session_id"]
    messages = show(home, sid)["messages"]
    assert messages[-1]["content"].endswith("the end")
    assert not any(m.get("type") in ("cancelled", "interrupted") for m in messages)
