"""The terminal experience, end to end with real subprocesses: ``--version``;
``runtime chat`` in a real pseudo-terminal (pexpect): turns, Ctrl-C cancels a turn,
Ctrl-D quits, ``--continue`` and ``--session PREFIX``; tool steps as one readable
line each; the final report rendered as Markdown on a terminal and plain in a pipe;
agent tracebacks in the log file or with ``--verbose``; reading the store while
``runtime serve`` owns it; unique-prefix ids; no traceback when stdout closes early.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pexpect
import pytest
from test_cli import AGENTS, ROOT, cli, env_for, json_lines, ok, one_error_line

from runtime import FileStore

sys.path.insert(0, str(ROOT / "tests" / "http"))
from sse_helpers import ServerProcess, free_port

CHAT = f"{AGENTS}:chat_agent"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def _as_a_terminal_starts_it() -> None:
    """In the child before ``exec``: Ctrl-C's SIGINT at its default action, as a shell
    starts a foreground program. An ignored SIGINT is inherited across ``exec`` and
    Python keeps it ignored, so a test process left ignoring it (by whatever ran in it
    before) would spawn a chat that Ctrl-C cannot reach."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(home: Path, *args: str) -> pexpect.spawn:
    """``python -m runtime ARGS`` in a pseudo-terminal of 30x100 characters."""
    env = {**env_for(home), "COLUMNS": "100", "LINES": "30", "TERM": "xterm"}
    child = pexpect.spawn(
        sys.executable,
        ["-m", "runtime", *args],
        cwd=str(ROOT),
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(30, 100),
        preexec_fn=_as_a_terminal_starts_it,
    )
    return child


def plain(text: str) -> str:
    return ANSI.sub("", text).replace("\r", "")


def test_version() -> None:
    done = ok(cli(Path("/nonexistent"), "--version"))
    assert re.fullmatch(r"runtime \d+\.\d+\.\d+\S*\n", done.stdout)


def test_shell_completion_offers_the_subcommands(tmp_path: Path) -> None:
    """The bash script of ``--print-completion bash``, loaded in a real bash, completes
    ``runtime <TAB>`` and ``runtime sessions <TAB>``."""
    script = tmp_path / "runtime.bash"
    script.write_text(ok(cli(Path("/nonexistent"), "--print-completion", "bash")).stdout)

    def complete(*words: str) -> list[str]:
        line = "; ".join(
            [
                f"source {script}",
                f"COMP_WORDS=(runtime {' '.join(words)} '')",
                f"COMP_CWORD={len(words) + 1}",
                f"_shtab_runtime runtime '' {words[-1] if words else 'runtime'}",
                'printf "%s\\n" "${COMPREPLY[@]}"',
            ]
        )
        done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, check=True)
        return done.stdout.split()

    assert set(complete()) >= {"run", "chat", "sessions", "serve"}
    assert set(complete("sessions")) >= {"list", "show", "recover"}
    bad = cli(Path("/nonexistent"), "--print-completion", "fish")
    assert bad.returncode == 2
    assert "fish" in bad.stderr


def test_chat_turns_cancel_with_ctrl_c_quit_with_ctrl_d_and_continue(home: Path) -> None:
    child = spawn(home, "chat", CHAT)
    child.expect("you> ")
    child.sendline("hello there")
    child.expect("you> ")
    first = plain(child.before)
    # one line per tool step: arguments and the result's key figures, or the tool's summary
    assert "✓ lookup(query=hello there, limit=5) → matches=3, files: 3 items, text: 500 chars" in (
        first
    )
    assert "✓ count_words(text=hello there) → 2 words counted" in first
    # the live preview shows the raw text; what stays is the rendered Markdown
    assert first[first.rindex("You said") :].startswith("You said hello there.")
    assert "• history: 0 messages" in first
    child.sendline("slow")
    child.expect("slow5 ")
    child.sendintr()  # Ctrl-C: cancels the turn, not the chat
    child.expect("cancelled")
    child.expect("you> ")
    child.sendline("after the cancel")
    child.expect("you> ")
    seen = int(re.search(r"history: (\d+) messages", plain(child.before)).group(1))
    child.sendeof()  # Ctrl-D
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    session_id = re.search(r"session ([0-9a-f]{32}) \(new\)", plain(child.before)).group(1)

    shown = json_lines(ok(cli(home, "sessions", "show", session_id[:8], "--json")).stdout)[0]
    users = [m["content"] for m in shown["messages"] if m["role"] == "user"]
    assert users == ["hello there", "slow", "after the cancel"]
    assert any(m.get("_partial") for m in shown["messages"])
    third = next(
        i for i, m in enumerate(shown["messages"]) if m.get("content") == "after the cancel"
    )
    assert seen == third  # the agent saw every earlier message, the cancelled turn's too
    assert shown["active_stream_id"] is None

    again = spawn(home, "chat", CHAT, "--continue")
    again.expect(f"session {session_id}")
    again.expect("you> ")
    again.sendline("third")
    again.expect("you> ")
    assert f"history: {len(shown['messages'])} messages" in plain(again.before)
    again.sendeof()
    again.expect(pexpect.EOF)
    again.close()
    assert again.exitstatus == 0


def test_chat_shows_agent_errors_with_the_traceback_in_the_log(home: Path) -> None:
    child = spawn(home, "chat", CHAT)
    child.expect("you> ")
    child.sendline("fail")
    child.expect("you> ")
    out = " ".join(plain(child.before).split())
    assert "error: RuntimeError: boom in chat agent" in out
    log = home / "runtime.log"
    assert f"traceback: {log}, or run with --verbose" in out
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    text = log.read_text()
    assert "Traceback (most recent call last)" in text
    assert 'raise RuntimeError("boom in chat agent")' in text


def test_run_verbose_prints_the_traceback(home: Path) -> None:
    done = cli(home, "run", CHAT, "fail", "--verbose")
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "RuntimeError: boom in chat agent" in done.stderr


def test_chat_continue_without_sessions_is_one_error_line(home: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "chat", CHAT, "--continue"],
        cwd=ROOT,
        env=env_for(home),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert "no session to continue" in one_error_line(done)


def test_run_renders_markdown_on_a_terminal_and_plain_text_in_a_pipe(home: Path) -> None:
    piped = ok(cli(home, "run", CHAT, "hello"))
    assert "# Report\n\nYou said **hello**." in piped.stdout  # the raw Markdown
    assert "✓ lookup(query=hello, limit=5) → matches=3, files: 3 items" in piped.stderr

    child = spawn(home, "run", CHAT, "hello")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    out = plain(child.before)
    assert out[out.rindex("You said") :].startswith("You said hello.")  # rendered
    assert "• history: 0 messages" in out


def test_prefix_ids_and_ambiguity(home: Path) -> None:
    sids = []
    for text in ("one", "two", "three"):
        done = ok(cli(home, "run", CHAT, text, "--json"))
        sids.append(json_lines(done.stdout)[0]["session_id"])
    target = sids[0]
    unique = next(
        target[:n] for n in range(1, 33) if not any(s.startswith(target[:n]) for s in sids[1:])
    )
    shown = json_lines(ok(cli(home, "sessions", "show", unique, "--json")).stdout)[0]
    assert shown["session_id"] == target
    again = ok(cli(home, "run", CHAT, "more", "--session", unique, "--json"))
    assert json_lines(again.stdout)[0]["session_id"] == target
    missing = cli(home, "sessions", "show", "zzzz")
    assert "no session id is or starts with it" in one_error_line(missing)
    assert missing.returncode == 1


def test_ambiguous_prefix_names_the_matches(home: Path) -> None:
    async def make() -> None:  # two sessions whose chosen ids share a prefix
        async with FileStore(home) as store:
            for sid in ("abc-one", "abc-two"):
                session = store.new_session(session_id=sid, title=sid)
                session.messages.append({"role": "user", "content": "hi"})
                await store.save(session)

    anyio.run(make)
    amb = cli(home, "sessions", "show", "abc")
    assert amb.returncode == 2
    line = one_error_line(amb)
    assert "ambiguous session id prefix 'abc': 2 sessions match (abc-one, abc-two)" in line
    assert "abc-two" in ok(cli(home, "sessions", "show", "abc-t")).stdout


def test_reading_the_store_while_a_server_owns_it(tmp_path: Path, home: Path) -> None:
    sid = json_lines(ok(cli(home, "run", CHAT, "before serve", "--json")).stdout)[0]["session_id"]
    server = ServerProcess(home, free_port(), tmp_path / "server.log", agent=CHAT)
    server.start()
    try:
        listed = ok(cli(home, "sessions", "list"))
        assert "reading it read-only" in listed.stderr
        assert sid in listed.stdout  # whole ids in a pipe, tab-separated
        assert listed.stdout.splitlines()[0].split("\t")[0] == "session"
        shown = ok(cli(home, "sessions", "show", sid[:10]))
        assert "before serve" in shown.stdout
        busy = cli(home, "run", CHAT, "x")  # writing still needs the owner
        assert "in use by another process" in one_error_line(busy)
    finally:
        server.kill()


def test_no_traceback_when_stdout_closes_early(home: Path) -> None:
    sid = json_lines(ok(cli(home, "run", CHAT, "word " * 3000, "--json")).stdout)[0]["session_id"]
    proc = subprocess.run(
        f"{sys.executable} -m runtime sessions show {sid} | head -1",
        shell=True,
        cwd=ROOT,
        env=env_for(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    assert proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr
    assert "BrokenPipe" not in proc.stderr
    assert proc.stderr == ""


def test_session_ids_stay_whole_on_a_narrow_terminal(home: Path) -> None:
    sid = json_lines(
        ok(cli(home, "run", CHAT, "a rather long first message " * 3, "--json")).stdout
    )[0]["session_id"]
    env = {**env_for(home), "COLUMNS": "60", "LINES": "20", "TERM": "xterm"}
    child = pexpect.spawn(
        sys.executable,
        ["-m", "runtime", "sessions", "list"],
        cwd=str(ROOT),
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(20, 60),
    )
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    table = plain(child.before)
    assert sid in table  # the id whole; the title column gives way
    assert max(len(line) for line in table.splitlines()) <= 60
