"""The ``runtime`` command line: ``run``, ``resume``, ``chat``, ``sessions``, ``routes``,
``serve``.

Every error is one line on stderr and a non-zero exit status (2 for bad usage or
input, 1 for a failure, 130 after Ctrl-C), in the manner of click's ``ClickException``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from .._exceptions import Error
from . import _chat, _resume, _routes, _run, _serve, _sessions
from ._common import CLIError, stdout_closed

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="runtime",
        description="Run AI-agent turns with durable sessions and resumable event streams.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.add_argument("--version", action="version", version=f"runtime {__version__}")
    for module in (_run, _resume, _chat, _sessions, _routes, _serve):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``runtime`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except CLIError as exc:
        print(f"runtime: error: {exc}", file=sys.stderr)  # noqa: T201
        return exc.exit_code
    except (ValueError, LookupError) as exc:
        print(f"runtime: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2 if isinstance(exc, ValueError) else 1
    except Error as exc:
        print(f"runtime: error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except KeyboardInterrupt:
        print("runtime: interrupted", file=sys.stderr)  # noqa: T201
        return 130
    except BrokenPipeError:
        return _closed_pipe()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return _closed_pipe()
    return code


def _closed_pipe() -> int:
    """The reader of stdout went away (``runtime sessions show ID | head``): no
    traceback, and no second error when Python flushes stdout at exit (the Python
    docs' recipe, "Note on SIGPIPE"). Exit status 141, as a shell reports SIGPIPE."""
    stdout_closed()
    return 141
