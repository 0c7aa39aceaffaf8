"""``runtime routes list|prune``: inspect and prune the gateway route table.

The route table (``<store root>/routes.json``) maps chat-platform conversations to
sessions; it is not the session list (that is ``runtime sessions list``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import TypeVar
from urllib.parse import urlsplit

import anyio

from .._exceptions import StoreError
from ..routing import RouteEntry, RouteTable
from ._common import CLIError, add_store_option, is_postgres, open_store, print_json, store_root

__all__ = ["register"]

_T = TypeVar("_T")

_COLUMNS = ("SESSION KEY", "SESSION ID", "PLATFORM", "CHAT TYPE", "NAME", "UPDATED", "SUSPENDED")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``routes list [--json] [--store DIR]`` and
    ``routes prune --max-age-days N [--json] [--store DIR]`` to ``subparsers``.

    Each leaf parser sets ``func(args: argparse.Namespace) -> int`` (the exit code:
    0 on success, 1 after a one-line error on stderr).
    """
    routes = subparsers.add_parser(
        "routes",
        help="gateway route table (chat conversations -> sessions)",
        description="Inspect or prune the gateway route table <store>/routes.json. It is "
        "not the session list; sessions are listed with `runtime sessions list`.",
    )
    commands = routes.add_subparsers(dest="routes_command", metavar="COMMAND", required=True)

    list_parser = commands.add_parser("list", help="list routes, most recently updated first")
    _common_options(list_parser)
    list_parser.set_defaults(func=_list_command)

    prune_parser = commands.add_parser(
        "prune",
        help="remove routes not updated for N days",
        description="Remove routes whose last update is more than N days old; suspended "
        "routes are kept and session files are never touched. N <= 0 disables pruning. "
        "This command cannot see a running gateway's processes: run it while the gateway "
        "is stopped, or let the gateway prune in the background.",
    )
    prune_parser.add_argument(
        "--max-age-days", type=int, required=True, metavar="N", help="age limit in days"
    )
    _common_options(prune_parser)
    prune_parser.set_defaults(func=_prune_command)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")
    add_store_option(parser)


def _open_table(args: argparse.Namespace) -> RouteTable:
    root = store_root(args)
    if not root.is_dir():
        raise CLIError(f"store root {str(root)!r} is not a directory (set --store or RUNTIME_HOME)")
    return RouteTable.for_root(root)


async def _on_table(args: argparse.Namespace, call: Callable[[RouteTable], Awaitable[_T]]) -> _T:
    """``call(table)`` on the route table ``--store`` names: the ``routes.json`` of a
    directory, or the ``routes.json`` document of a PostgreSQL store."""
    if is_postgres(args):
        async with open_store(args) as store:
            return await call(RouteTable.on_store(store))
    return await call(_open_table(args))


def _fail(exc: BaseException) -> int:
    message = " ".join(str(exc).split())  # always one line
    sys.stderr.write(f"runtime: error: {message}\n")
    return exc.exit_code if isinstance(exc, CLIError) else 1


def _list_command(args: argparse.Namespace) -> int:
    """``routes list``: a table (rich when installed), or one JSON array with ``--json``."""
    try:
        where = _where(args)
        entries = anyio.run(_on_table, args, lambda t: t.entries())
    except (CLIError, StoreError, OSError) as exc:
        return _fail(exc)
    if args.json:
        print_json([e.to_dict() for e in entries])
    elif not entries:
        sys.stdout.write(f"No routes in {where}.\n")
    else:
        _print_table(where, [_row(e) for e in entries])
    return 0


def _prune_command(args: argparse.Namespace) -> int:
    """``routes prune --max-age-days N``: prints how many routes were removed."""
    days: int = args.max_age_days
    try:
        where = _where(args)
        removed = anyio.run(_on_table, args, lambda t: t.prune_old_entries(days))
    except (CLIError, StoreError, OSError) as exc:
        return _fail(exc)
    if args.json:
        print_json({"removed": removed})
    elif days <= 0:
        sys.stdout.write(f"Pruning disabled (--max-age-days {days} <= 0): removed 0 routes.\n")
    else:
        sys.stdout.write(
            f"Removed {removed} route(s) not updated for {days} day(s) from {where}.\n"
        )
    return 0


def _row(entry: RouteEntry) -> tuple[str, ...]:
    updated = entry.updated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        entry.session_key,
        entry.session_id,
        entry.platform,
        entry.chat_type,
        entry.display_name or "",
        updated,
        "yes" if entry.suspended else "no",
    )


def _where(args: argparse.Namespace) -> str:
    """Where the table lives, for messages (a DSN is shown without its password)."""
    if is_postgres(args):
        parts = urlsplit(args.store)
        host = parts.hostname or ""
        return f"the routes.json document of PostgreSQL {host}:{parts.port or 5432}{parts.path}"
    return str(_open_table(args).path)


def _print_table(path: str, rows: list[tuple[str, ...]]) -> None:
    title = f"{len(rows)} route(s) in {path}"
    try:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text
    except ImportError:
        widths = [max(len(r[i]) for r in [_COLUMNS, *rows]) for i in range(len(_COLUMNS))]
        lines = [title] + [
            "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in [_COLUMNS, *rows]
        ]
        sys.stdout.write("\n".join(lines) + "\n")
        return
    console = Console()
    if not console.is_terminal:  # piped: never wrap cells, there is no screen width
        console = Console(width=100_000)
    console.print(Text(title))
    grid = Table()
    for name in _COLUMNS:
        grid.add_column(name, no_wrap=not console.is_terminal)
    for r in rows:
        grid.add_row(*(Text(cell) for cell in r))  # Text: names are not rich markup
    console.print(grid)
