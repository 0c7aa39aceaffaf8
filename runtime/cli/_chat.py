"""``runtime chat AGENT [--session ID | --continue]``: a multi-turn conversation in the
terminal.

The runtime lives on an event loop in a second thread (an anyio blocking portal) so
that the main thread can own the terminal: ``input()`` with readline line editing and
history, and Ctrl-C arriving as ``KeyboardInterrupt`` where the REPL can act on it.
Ctrl-C while a turn runs cancels the turn (its partial output is kept) and returns to
the prompt; Ctrl-C at the prompt clears the line; Ctrl-D (end of input) quits.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.from_thread

from .._config import default_root
from .._runtime import Runtime
from .._session import validate_session_id
from ._agents import load_agent
from ._common import (
    CLIError,
    add_store_option,
    add_verbose_option,
    is_postgres,
    open_store,
    resolve_session,
    setup_logging,
    store_root,
)
from ._display import TerminalView
from ._run import _title

__all__ = ["register"]

PROMPT = "you> "
HISTORY_LINES = 1000


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``chat`` to the subcommands."""
    p = sub.add_parser(
        "chat",
        help="talk to an agent, turn after turn, in one session",
        description="A conversation with AGENT in a new session, a given one (--session) or "
        "the most recent one (--continue). Ctrl-C cancels the running turn (its partial "
        "output is kept), Ctrl-D quits. Line editing and history via readline.",
    )
    p.add_argument("agent", metavar="AGENT", help="path/file.py:function or module:function")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--session", metavar="ID", help="continue this session (id or prefix)")
    which.add_argument(
        "--continue",
        dest="continue_",
        action="store_true",
        help="continue the most recently updated session",
    )
    add_store_option(p)
    add_verbose_option(p)
    p.set_defaults(func=cmd_chat)


def cmd_chat(args: argparse.Namespace) -> int:
    """Run the REPL until Ctrl-D; exit 0."""
    agent = load_agent(args.agent)
    if args.session is not None:
        validate_session_id(args.session)
    log_hint = setup_logging(args)
    home = default_root() if is_postgres(args) else store_root(args)
    history = _History(home / "chat_history")
    with anyio.from_thread.start_blocking_portal() as portal:
        rt = Runtime(open_store(args), agent)
        with portal.wrap_async_context_manager(rt):
            session_id = portal.call(_pick_session, rt, args)
            new = session_id is None
            _say(
                f"chat with {args.agent} · session {session_id or '(new)'} · "
                "Ctrl-C cancels a turn, Ctrl-D quits"
            )
            while True:
                line = _read_line()
                if line is None:
                    break
                if not line.strip():
                    continue
                if session_id is None:
                    session_id = rt.new_session(title=_title(line)).session_id
                view = TerminalView(markdown=sys.stdout.isatty(), log_hint=log_hint)
                _run_turn(portal, rt, session_id, line, view)
    history.save()
    if session_id is not None:
        _say(f"session {session_id}{' (new)' if new else ''}")
    return 0


async def _pick_session(rt: Runtime, args: argparse.Namespace) -> str | None:
    """The session to continue: ``--session``'s, the newest for ``--continue``, or
    ``None`` for a new one (made with the first message).

    :raises CLIError: for ``--continue`` when there is no session yet.
    """
    if args.session is not None:
        session_id = await resolve_session(rt.store, args.session)
        await rt.get_session(session_id, metadata_only=True)  # repairs a dead stream
        return session_id
    if args.continue_:
        page = await rt.list_sessions(limit=1)
        if not page.sessions:
            raise CLIError("no session to continue: start one with 'runtime chat AGENT'")
        return page.sessions[0].session_id
    return None


def _run_turn(
    portal: anyio.from_thread.BlockingPortal,
    rt: Runtime,
    session_id: str,
    text: str,
    view: TerminalView,
) -> None:
    """Run one turn, showing it; Ctrl-C cancels it and waits for its end."""
    stream_id = portal.call(rt.start_turn, session_id, text)
    future = portal.start_task_soon(_follow, rt, stream_id, view)
    while True:
        try:
            future.result()
            return
        except KeyboardInterrupt:
            portal.call(rt.cancel, stream_id)  # the view shows "cancelled" and ends


async def _follow(rt: Runtime, stream_id: str, view: TerminalView) -> None:
    async for event in rt.events(stream_id):
        view.show(event)
    view.finish()


def _read_line() -> str | None:
    """One line from the user; ``None`` at end of input (Ctrl-D). Ctrl-C at the prompt
    abandons the line and asks again."""
    while True:
        try:
            return input(PROMPT)
        except EOFError:
            sys.stdout.write("\n")
            return None
        except KeyboardInterrupt:
            sys.stdout.write("^C\n")


def _say(text: str) -> None:
    print(text, file=sys.stderr)  # noqa: T201


class _History:
    """readline history kept in a file (``0600``) across chats; nothing without readline
    or when stdin is not a terminal."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._readline: object | None = None
        if not sys.stdin.isatty():
            return
        try:
            import readline
        except ImportError:  # pragma: no cover - e.g. a Python built without it
            return
        self._readline = readline
        readline.set_history_length(HISTORY_LINES)
        with contextlib.suppress(OSError):
            readline.read_history_file(path)

    def save(self) -> None:
        if self._readline is None:
            return
        write: Callable[[str], None] = self._readline.write_history_file  # type: ignore[attr-defined]
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write(str(self.path))
            self.path.chmod(0o600)
