"""``runtime run AGENT PROMPT``: run one turn in the terminal, streaming it."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys

import anyio
import anyio.abc

from .. import _events as ev
from .._runner import Agent
from .._runtime import Runtime
from .._session import validate_session_id
from ._agents import load_agent
from ._common import (
    add_store_option,
    add_verbose_option,
    open_store,
    resolve_session,
    setup_logging,
    stdout_closed,
)
from ._display import JsonView, TerminalView, View

__all__ = ["follow", "register"]

_EXIT = {"done": 0, "error": 1, "cancelled": 130, "interrupted": 1, "lease_lost": 1}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run`` to the subcommands."""
    p = sub.add_parser(
        "run",
        help="run one turn of an agent, streaming tokens and tool steps",
        description="Run one turn of AGENT on PROMPT in a new session (or --session ID), "
        "streaming the answer to stdout (rendered as Markdown on a terminal) and one line "
        "per tool step to stderr. Ctrl-C cancels the turn and keeps its partial output.",
    )
    p.add_argument("agent", metavar="AGENT", help="path/file.py:function or module:function")
    p.add_argument("prompt", metavar="PROMPT", help="the user message")
    p.add_argument("--session", metavar="ID", help="continue this session (id or unique prefix)")
    p.add_argument("--json", action="store_true", help="one JSON event per line on stdout")
    p.add_argument(
        "--checkpoint-interval",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds between checkpoints while the agent works (default 1.0)",
    )
    add_store_option(p)
    add_verbose_option(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the turn; exit 0 when done, 1 on an agent error, 130 when cancelled."""
    agent = load_agent(args.agent)
    if args.session is not None:
        validate_session_id(args.session)
    if not args.prompt.strip():
        raise ValueError("invalid PROMPT '': must be a non-empty string")
    return anyio.run(_run, args, agent, setup_logging(args))


async def _run(args: argparse.Namespace, agent: Agent, log_hint: str | None) -> int:
    view: View = (
        JsonView() if args.json else TerminalView(markdown=sys.stdout.isatty(), log_hint=log_hint)
    )
    store = open_store(args)
    async with Runtime(store, agent, checkpoint_interval=args.checkpoint_interval) as rt:
        if args.session is not None:
            session_id = await resolve_session(rt.store, args.session)
            session = await rt.get_session(session_id, metadata_only=True)
        else:
            session = await rt.create_session(title=_title(args.prompt))
        stream_id = await rt.start_turn(session.session_id, args.prompt)
        return await follow(rt, stream_id, session.session_id, view)


async def follow(rt: Runtime, stream_id: str, session_id: str, view: View) -> int:
    """Show a live stream until it ends (Ctrl-C cancels the turn); the exit status."""
    outcome = "done"
    shown: View | None = view
    async with anyio.create_task_group() as tg:
        tg.start_soon(_cancel_on_sigint, rt, stream_id)
        async for event in rt.events(stream_id):
            if shown is not None:
                try:
                    shown.show(event)
                except BrokenPipeError:  # `runtime run … | head -1`: the reader left
                    stdout_closed()
                    shown = None  # the turn still runs to its end and is saved
            if event.type == ev.STREAM_END:
                outcome = str(event.data.get("outcome", "done"))
        tg.cancel_scope.cancel()
    if shown is not None:
        with contextlib.suppress(BrokenPipeError):
            shown.close(session_id, outcome)
    return _EXIT.get(outcome, 1)


async def _cancel_on_sigint(rt: Runtime, stream_id: str) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            await rt.cancel(stream_id)


def _title(prompt: str) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= 60 else line[:59] + "…"
