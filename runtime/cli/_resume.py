"""``runtime resume ID --agent AGENT``: continue a session's interrupted turn."""

from __future__ import annotations

import argparse
import sys

import anyio

from .._runner import Agent
from .._runtime import Runtime
from ._agents import load_agent
from ._common import (
    CLIError,
    add_store_option,
    add_verbose_option,
    open_store,
    resolve_session,
    setup_logging,
)
from ._display import JsonView, TerminalView, View
from ._run import follow

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``resume`` to the subcommands."""
    p = sub.add_parser(
        "resume",
        help="continue a session's interrupted turn (or --discard it)",
        description="Continue the interrupted turn of session ID (a turn whose process "
        "stopped) with AGENT, as the next attempt of the same stream, and stream it like "
        "'runtime run'. Completed tool calls are not run again. With --discard, give the "
        "turn up instead (it stays closed by its 'interrupted' marker).",
    )
    p.add_argument("session", metavar="ID", help="the session (id or unique prefix)")
    p.add_argument(
        "--agent", metavar="AGENT", help="path/file.py:function or module:function (to resume)"
    )
    p.add_argument("--discard", action="store_true", help="give the interrupted turn up")
    p.add_argument("--json", action="store_true", help="one JSON event per line on stdout")
    p.add_argument(
        "--max-resume-attempts",
        type=int,
        default=3,
        metavar="N",
        help="resumes a turn may have; one more ends it with resume_exhausted (default 3)",
    )
    add_store_option(p)
    add_verbose_option(p)
    p.set_defaults(func=cmd_resume)


def cmd_resume(args: argparse.Namespace) -> int:
    """Resume (exit as ``runtime run``) or discard (exit 0; 1 if nothing to discard)."""
    if args.discard == (args.agent is not None):
        raise CLIError("give exactly one of --agent AGENT (to resume) and --discard", 2)
    agent = load_agent(args.agent) if args.agent is not None else _no_agent
    return anyio.run(_resume, args, agent, setup_logging(args))


async def _no_agent(turn: object) -> None:
    raise RuntimeError("runtime resume --discard runs no agent")


async def _resume(args: argparse.Namespace, agent: Agent, log_hint: str | None) -> int:
    async with Runtime(open_store(args), agent, max_resume_attempts=args.max_resume_attempts) as rt:
        session_id = await resolve_session(rt.store, args.session)
        if args.discard:
            discarded = await rt.discard(session_id)
            print("discarded" if discarded else "nothing to discard", file=sys.stderr)  # noqa: T201
            return 0 if discarded else 1
        stream_id = await rt.resume(session_id)
        view: View = (
            JsonView()
            if args.json
            else TerminalView(markdown=sys.stdout.isatty(), log_hint=log_hint)
        )
        return await follow(rt, stream_id, session_id, view)
