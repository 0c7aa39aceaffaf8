"""Helpers shared by the CLI commands: the store option, errors, JSON output."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from .._config import default_root

__all__ = ["CLIError", "add_store_option", "print_json", "stdout_closed", "store_root"]


class CLIError(Exception):
    """A one-line error for the user; ``exit_code`` is the process exit status."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_store_option(parser: argparse.ArgumentParser) -> None:
    """``--store DIR``: the FileStore root (default ``$RUNTIME_HOME`` or ``./.runtime``)."""
    parser.add_argument(
        "--store",
        metavar="DIR",
        default=None,
        help="store root directory (default: $RUNTIME_HOME or ./.runtime)",
    )


def store_root(args: argparse.Namespace) -> Path:
    """The store root chosen by ``--store`` or the default."""
    value = getattr(args, "store", None)
    return Path(value) if value else default_root()


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
