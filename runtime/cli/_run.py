"""``runtime run AGENT PROMPT``: run one turn in the terminal, streaming it."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from typing import Any

import anyio
import anyio.abc

from .. import _events as ev
from .._events import Event
from .._runner import Agent
from .._runtime import Runtime
from .._session import validate_session_id
from ..stores.files import FileStore
from ._agents import load_agent
from ._common import add_store_option, print_json, stdout_closed, store_root

__all__ = ["register"]

_EXIT = {"done": 0, "error": 1, "cancelled": 130, "interrupted": 1}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run`` to the subcommands."""
    p = sub.add_parser(
        "run",
        help="run one turn of an agent, streaming tokens and tool steps",
        description="Run one turn of AGENT on PROMPT in a new session (or --session ID), "
        "streaming tokens to stdout and tool steps to stderr. Ctrl-C cancels the turn "
        "and keeps its partial output.",
    )
    p.add_argument("agent", metavar="AGENT", help="path/file.py:function or module:function")
    p.add_argument("prompt", metavar="PROMPT", help="the user message")
    p.add_argument("--session", metavar="ID", help="continue this session")
    p.add_argument("--json", action="store_true", help="one JSON event per line on stdout")
    p.add_argument(
        "--checkpoint-interval",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds between checkpoints while the agent works (default 1.0)",
    )
    add_store_option(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the turn; exit 0 when done, 1 on an agent error, 130 when cancelled."""
    agent = load_agent(args.agent)
    if args.session is not None:
        validate_session_id(args.session)
    if not args.prompt.strip():
        raise ValueError("invalid PROMPT '': must be a non-empty string")
    return anyio.run(_run, args, agent)


async def _run(args: argparse.Namespace, agent: Agent) -> int:
    view: _View = _JsonView() if args.json else _TextView()
    store = FileStore(store_root(args))
    async with Runtime(store, agent, checkpoint_interval=args.checkpoint_interval) as rt:
        if args.session is not None:
            session = await rt.get_session(args.session, metadata_only=True)
        else:
            session = rt.new_session(title=_title(args.prompt))
        stream_id = await rt.start_turn(session.session_id, args.prompt)
        outcome = "done"
        shown: _View | None = view
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
                shown.close(session.session_id, outcome)
    return _EXIT.get(outcome, 1)


async def _cancel_on_sigint(rt: Runtime, stream_id: str) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            await rt.cancel(stream_id)


def _title(prompt: str) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= 60 else line[:59] + "…"


class _View:
    def show(self, event: Event) -> None:
        raise NotImplementedError

    def close(self, session_id: str, outcome: str) -> None:
        raise NotImplementedError


class _JsonView(_View):
    """One JSON object per event on stdout: ``{seq, stream_id, session_id, type, data, ts}``."""

    def show(self, event: Event) -> None:
        print_json(event.to_dict())

    def close(self, session_id: str, outcome: str) -> None:
        pass


class _TextView(_View):
    """Tokens as text on stdout; tool steps as live progress lines on stderr (rich)."""

    def __init__(self) -> None:
        try:
            from rich.console import Console
        except ImportError:  # the cli extra is not installed: plain lines
            self.console: Any = None
        else:
            self.console = Console(stderr=True, highlight=False)
        self.status: Any = None
        self.at_line_start = True

    def _note(self, markup: str, plain: str) -> None:
        self._break_line()
        if self.console is not None:
            self.console.print(markup)
        else:
            print(plain, file=sys.stderr)  # noqa: T201

    def _break_line(self) -> None:
        if not self.at_line_start:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self.at_line_start = True

    def show(self, event: Event) -> None:
        t, d = event.type, event.data
        if t == ev.TOKEN:
            text = str(d.get("text", ""))
            sys.stdout.write(text)
            sys.stdout.flush()
            if text:
                self.at_line_start = text.endswith("\n")
        elif t == ev.TOOL_STARTED:
            label = f"{d.get('name')} {_short(d.get('arguments'))}"
            if self.console is not None:
                self._break_line()
                self.status = self.console.status(f"[bold]{_esc(label)}[/]")
                self.status.start()
            else:
                self._note("", f"… {label}")
        elif t == ev.TOOL_COMPLETED:
            if self.status is not None:
                self.status.stop()
                self.status = None
            mark, colour = ("✗", "red") if d.get("error") else ("✓", "green")
            summary = d.get("error") or _short(d.get("result"))
            secs = f"{float(d.get('duration_s') or 0):.2f}s"
            self._note(
                f"[{colour}]{mark}[/] [bold]{_esc(str(d.get('name')))}[/] {_esc(summary)} "
                f"[dim]{secs}[/]",
                f"{mark} {d.get('name')} {summary} {secs}",
            )
        elif t == ev.REASONING:
            self._note(f"[dim italic]{_esc(str(d.get('text')))}[/]", str(d.get("text")))
        elif t == ev.CHECKPOINT:
            n = d.get("messages")
            self._note(f"[dim]checkpoint: {n} messages durable[/]", f"checkpoint: {n} messages")
        elif t == ev.ERROR:
            self._note(f"[red]error:[/] {_esc(str(d))}", f"error: {d}")
        elif t == ev.CANCELLED:
            self._note("[yellow]cancelled[/] (partial output kept)", "cancelled")

    def close(self, session_id: str, outcome: str) -> None:
        if self.status is not None:
            self.status.stop()
        self._note(f"[dim]session {session_id} ({outcome})[/]", f"session {session_id} ({outcome})")


def _short(value: object, limit: int = 90) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _esc(text: str) -> str:
    return text.replace("[", "\\[")
