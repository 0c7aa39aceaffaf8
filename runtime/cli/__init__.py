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
    parser.add_argument(
        "--print-completion",
        choices=("bash", "zsh", "tcsh"),
        action=_PrintCompletion,
        help="print the shell completion script and exit, e.g. "
        "'runtime --print-completion bash > ~/.local/share/bash-completion/completions/runtime'",
    )
    for module in (_run, _resume, _chat, _sessions, _routes, _serve):
        module.register(sub)
    return parser


class _PrintCompletion(argparse.Action):
    """``--print-completion SHELL``: the completion script shtab generates from the
    parser (subcommands, options, their choices). shtab is imported only here."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[object] | None,
        option_string: str | None = None,
    ) -> None:
        try:
            import shtab
        except ImportError:
            parser.exit(2, "runtime: error: --print-completion needs shtab: pip install shtab\n")
        print(shtab.complete(parser, shell=str(values)))  # noqa: T201
        parser.exit(0)


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
