"""``runtime sessions list|show ID|recover``."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from typing import Any

import anyio
import orjson

from .._session import Session, validate_session_id
from ._common import add_store_option, open_sessions, open_store, print_json, resolve_session
from ._display import summarize, tool_call_text

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sessions`` and its subcommands."""
    p = sub.add_parser("sessions", help="list, show and recover stored sessions")
    ss = p.add_subparsers(dest="sessions_command", metavar="SUBCOMMAND", required=True)

    lp = ss.add_parser("list", help="list sessions, newest first (empty Untitled ones hidden)")
    lp.add_argument("--limit", type=int, default=50, help="sessions per page (1-1000)")
    lp.add_argument("--cursor", default=None, help="next_cursor of a previous page")
    lp.add_argument("--json", action="store_true", help="print JSON")
    add_store_option(lp)
    lp.set_defaults(func=lambda a: anyio.run(_list, a))

    sp = ss.add_parser("show", help="show one session (repairs a stale stream first)")
    sp.add_argument("session_id", metavar="ID", help="a session id, or a unique prefix of one")
    sp.add_argument("--json", action="store_true", help="print the whole session as JSON")
    add_store_option(sp)
    sp.set_defaults(func=_show_cmd)

    rp = ss.add_parser("recover", help="run startup recovery and print its report")
    rp.add_argument("--json", action="store_true", help="print JSON")
    add_store_option(rp)
    rp.set_defaults(func=lambda a: anyio.run(_recover, a))


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


async def _list(args: argparse.Namespace) -> int:
    async with open_sessions(args) as sessions:
        page = await sessions.page(args.limit, args.cursor)
    if args.json:
        print_json(
            {"sessions": [s.meta_dict() for s in page.sessions], "next_cursor": page.next_cursor}
        )
        return 0
    rows = [
        (
            s.session_id,
            s.title,
            str(s.message_count),
            _when(s.updated_at),
            "streaming" if s.active_stream_id else "",
        )
        for s in page.sessions
    ]
    _table(["session", "title", "messages", "updated", "state"], rows)
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}", file=sys.stderr)  # noqa: T201
    return 0


def _table(headers: list[str], rows: Sequence[tuple[str, ...]]) -> None:
    """A rich table on a terminal (ids never truncated: the title gives way); plain
    tab-separated lines otherwise, for pipes and scripts."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        console = None
    else:
        console = Console()
    if console is None or not console.is_terminal:
        for row in [tuple(headers), *rows]:
            sys.stdout.write("\t".join(row) + "\n")
        sys.stdout.flush()
        return
    table = Table()
    for i, header in enumerate(headers):
        if i == 0:
            table.add_column(
                header, no_wrap=True, min_width=max((len(r[0]) for r in rows), default=8)
            )
        elif i == 1:
            table.add_column(header, ratio=1, overflow="fold")
        else:
            table.add_column(header, no_wrap=True)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _show_cmd(args: argparse.Namespace) -> int:
    validate_session_id(args.session_id)  # before the store is touched
    return anyio.run(_show, args)


async def _show(args: argparse.Namespace) -> int:
    async with open_sessions(args) as sessions:
        session_id = await resolve_session(sessions.store, args.session_id)
        session = await sessions.get(session_id)
    if args.json:
        print_json(session.to_dict())
        return 0
    _print_transcript(session)
    return 0


def _print_transcript(session: Session) -> None:
    """The transcript: a header line per message, tool calls as one line each, the
    text whole (rendered as Markdown on a terminal)."""
    try:
        from rich.console import Console
        from rich.markdown import Markdown
    except ImportError:
        console = None
    else:
        console = Console(highlight=False)
        if not console.is_terminal:
            console = None
    out = sys.stdout
    out.write(
        f"{session.title}  ({session.session_id}, {session.message_count} messages, "
        f"updated {_when(session.updated_at)})\n"
    )
    for m in session.messages:
        marks = [k for k in ("_partial", "_recovered", "_error", "_cancelled") if m.get(k)]
        kind = f" [{m['type']}]" if m.get("type") else ""
        head = f"\n── {m.get('role')}{kind}{' ' + ' '.join(marks) if marks else ''}"
        out.write(head + "\n")
        for call in m.get("tool_calls") or ():
            fn: dict[str, Any] = call.get("function", {})
            out.write(f"  → {tool_call_text(fn.get('name'), _decoded(fn.get('arguments')))}\n")
        content = m.get("content")
        if not content:
            continue
        if m.get("role") == "tool":
            out.write(f"  ← {summarize(_decoded(content))}\n")
        elif console is not None and m.get("role") == "assistant":
            out.flush()
            console.print(Markdown(str(content)))
        else:
            out.write(str(content) + "\n")
    out.flush()


def _decoded(value: object) -> object:
    """A JSON string decoded (tool arguments and results are stored as JSON text)."""
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


async def _recover(args: argparse.Namespace) -> int:
    async with open_store(args) as store:
        report = await store.recover()
    if args.json:
        print_json(report)
    else:
        print(  # noqa: T201
            f"scanned {report['scanned']} sessions, restored {report['restored']}, "
            f"recreated {report['orphaned_backups']} from orphan backups"
        )
    return 0
