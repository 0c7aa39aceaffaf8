"""Helpers shared by the CLI commands: the store option, errors, JSON output."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

from .._config import default_root
from .._exceptions import SessionNotFound, StoreLocked
from .._session import Session, validate_session_id
from ..repair import load_repaired
from ..stores.abc import SessionPage, Store
from ..stores.files import FileStore

__all__ = [
    "CLIError",
    "Sessions",
    "add_store_option",
    "add_verbose_option",
    "is_postgres",
    "open_sessions",
    "open_store",
    "print_json",
    "resolve_session",
    "setup_logging",
    "stdout_closed",
    "store_root",
]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class CLIError(Exception):
    """A one-line error for the user; ``exit_code`` is the process exit status."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_store_option(parser: argparse.ArgumentParser) -> None:
    """``--store DIR|postgresql://…``: the FileStore root (default ``$RUNTIME_HOME`` or
    ``./.runtime``) or a PostgreSQL DSN."""
    parser.add_argument(
        "--store",
        metavar="DIR|DSN",
        default=None,
        help="store root directory (default: $RUNTIME_HOME or ./.runtime), or a "
        "postgresql://user@host:port/db DSN for PostgresStore",
    )


def is_postgres(args: argparse.Namespace) -> bool:
    """True if ``--store`` is a PostgreSQL DSN."""
    value = getattr(args, "store", None) or ""
    return bool(value.startswith(_POSTGRES_SCHEMES))


def store_root(args: argparse.Namespace) -> Path:
    """The store root chosen by ``--store`` or the default.

    :raises CLIError: if ``--store`` is a DSN (the command needs a directory).
    """
    value = getattr(args, "store", None)
    if is_postgres(args):
        raise CLIError("this command needs a store directory, not a PostgreSQL DSN")
    return Path(value) if value else default_root()


def open_store(args: argparse.Namespace) -> Store:
    """The store ``--store`` names: a :class:`PostgresStore` for a ``postgresql://``
    DSN, else a :class:`FileStore` on the directory (unopened).

    :raises CLIError: if the DSN needs the ``postgres`` extra that is not installed.
    """
    if is_postgres(args):
        try:
            import asyncpg  # noqa: F401
        except ImportError as exc:
            raise CLIError(
                "--store postgresql://… needs the postgres extra: pip install 'runtime[postgres]'"
            ) from exc
        from ..stores.postgres import PostgresStore

        return PostgresStore(args.store)
    from ..stores.files import FileStore

    return FileStore(store_root(args))


def print_json(value: Any) -> None:
    """One JSON document on its own line on stdout."""
    sys.stdout.buffer.write(orjson.dumps(value, default=str) + b"\n")
    sys.stdout.flush()


def add_verbose_option(parser: argparse.ArgumentParser) -> None:
    """``--verbose``: log to stderr, agent tracebacks included."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log to stderr, with the traceback of an agent's exception "
        "(default: warnings and tracebacks go to runtime.log in the store root)",
    )


def setup_logging(args: argparse.Namespace) -> str | None:
    """Send the library's log records (agent exceptions with their traceback among
    them) to stderr with ``--verbose``, else to ``<store root>/runtime.log``. Returns
    where tracebacks go, for the error line to name."""
    logger = logging.getLogger("runtime")
    logger.setLevel(logging.INFO if getattr(args, "verbose", False) else logging.WARNING)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(args, "verbose", False):
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        where = None
    else:
        root = store_root(args)
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = root / "runtime.log"
        handler = logging.FileHandler(path, encoding="utf-8", delay=True)
        where = f"{path}, or run with --verbose"
    handler.setFormatter(fmt)
    logger.addHandler(handler)
    logger.propagate = False
    return where


async def resolve_session(store: Store, ref: str) -> str:
    """The session id ``ref`` names: itself if it exists, else the one stored id that
    starts with it.

    :raises InvalidSessionId: if ``ref`` breaks the id rule.
    :raises SessionNotFound: if no session id starts with ``ref``.
    :raises CLIError: (exit 2) if several do, naming some of them.
    """
    validate_session_id(ref)
    if await store.exists(ref):
        return ref
    matches: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_sessions(limit=1000, cursor=cursor)
        matches += [s.session_id for s in page.sessions if s.session_id.startswith(ref)]
        cursor = page.next_cursor
        if cursor is None:
            break
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise SessionNotFound(f"no session {ref!r}: no session id is or starts with it")
    shown = ", ".join(sorted(matches)[:5]) + (", …" if len(matches) > 5 else "")
    raise CLIError(
        f"ambiguous session id prefix {ref!r}: {len(matches)} sessions match ({shown}); "
        "give more characters",
        exit_code=2,
    )


class Sessions:
    """What the reading commands go through: the store this process owns (stale
    streams are repaired through a full load, :func:`runtime.repair.load_repaired`),
    or, while another process owns a FileStore, the store opened read-only (nothing
    is repaired or written)."""

    def __init__(self, store: Store, *, repair: bool) -> None:
        self.store = store
        self.repair = repair

    async def get(self, session_id: str) -> Session:
        if self.repair:
            return await load_repaired(self.store, session_id)
        return await self.store.load(session_id)

    async def page(self, limit: int, cursor: str | None) -> SessionPage:
        return await self.store.list_sessions(limit=limit, cursor=cursor)


@asynccontextmanager
async def open_sessions(args: argparse.Namespace) -> AsyncIterator[Sessions]:
    """Open the store to read: owning it if it is free, else (a FileStore that
    another process owns) read-only beside that process (a note on stderr says so)."""
    async with AsyncExitStack() as stack:
        try:
            store = await stack.enter_async_context(open_store(args))
            sessions = Sessions(store, repair=True)
        except StoreLocked as exc:
            store = await stack.enter_async_context(FileStore(store_root(args), read_only=True))
            sessions = Sessions(store, repair=False)
            holder = str(exc).partition("(pid ")[2].partition(")")[0] or "unknown"
            print(  # noqa: T201
                f"runtime: note: pid {holder} owns the store (e.g. runtime serve); "
                "reading it read-only",
                file=sys.stderr,
            )
        yield sessions


def stdout_closed() -> None:
    """The reader of stdout went away (``runtime … | head``): point stdout at
    ``/dev/null`` so that nothing more fails, not even the flush at exit (the recipe
    of the Python docs, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
