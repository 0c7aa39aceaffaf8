"""Helpers shared by the CLI commands: the store option, errors, JSON output."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from .._config import default_root

if TYPE_CHECKING:
    from ..stores.abc import Store

__all__ = [
    "CLIError",
    "add_store_option",
    "open_store",
    "print_json",
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


def stdout_closed() -> None:
    """The reader of stdout went away (``runtime … | head``): point stdout at
    ``/dev/null`` so that nothing more fails, not even the flush at exit (the recipe
    of the Python docs, "Note on SIGPIPE")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
