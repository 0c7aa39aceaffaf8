"""How a turn looks in the terminal: one readable line per tool step, the assistant's
text rendered as Markdown (rich) when stdout is a terminal and plain otherwise, or
one JSON event per line for machines."""

from __future__ import annotations

import sys
from typing import Any

from .. import _events as ev
from .._events import Event
from ._common import print_json

__all__ = ["JsonView", "TerminalView", "View", "summarize", "tool_call_text"]

#: Longest summary of a tool's arguments or result, in characters.
SUMMARY_CHARS = 80
_SHORT_STRING = 32


def _count(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _text_figures(text: str) -> str:
    lines = text.count("\n") + 1
    return f"{_count(len(text), 'char')}, {_count(lines, 'line')}"


def _scalar(value: object) -> str | None:
    """A value short enough to show whole, as text; ``None`` if it is not."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:,}" if isinstance(value, int) else f"{value:g}"
    if isinstance(value, str) and len(value) <= _SHORT_STRING and "\n" not in value:
        return value
    return None


def _field(key: str, value: object) -> str:
    shown = _scalar(value)
    if shown is not None:
        return f"{key}={shown}"
    if isinstance(value, str):
        return f"{key}: {_text_figures(value)}"
    if isinstance(value, list | tuple):
        return f"{key}: {_count(len(value), 'item')}"
    if isinstance(value, dict):
        return f"{key}: {_count(len(value), 'key')}"
    return f"{key}: {type(value).__name__}"


def summarize(value: object, limit: int = SUMMARY_CHARS) -> str:
    """The key figures of a tool's result or arguments, never a cut-off repr: a short
    value whole; a long text as its size; a list as its length; a dict as its short
    fields (``matches=12``) and the sizes of the others, as many as fit in ``limit``
    characters, then ``+N more``."""
    shown = _scalar(value)
    if shown is not None and (not isinstance(value, str) or len(value) <= limit):
        return shown
    if isinstance(value, str):
        one_line = " ".join(value.split())
        return one_line if len(one_line) <= limit and "\n" not in value else _text_figures(value)
    if isinstance(value, list | tuple):
        return _count(len(value), "item")
    if not isinstance(value, dict):
        return type(value).__name__
    parts: list[str] = []
    used = 0
    for i, (key, item) in enumerate(value.items()):
        text = _field(str(key), item)
        rest = len(value) - i
        if parts and used + len(text) + 2 > limit - (len(f" +{rest} more") if rest > 1 else 0):
            return ", ".join(parts) + f" +{rest} more"
        parts.append(text)
        used += len(text) + 2
    return ", ".join(parts) if parts else "{}"


def tool_call_text(name: object, arguments: object) -> str:
    """``name(key=value, …)`` with the arguments summarised."""
    args = summarize(arguments) if arguments else ""
    return f"{name}({'' if args == '{}' else args})"


class View:
    """Shows a turn's events; :meth:`close` after ``stream.end``."""

    def show(self, event: Event) -> None:
        raise NotImplementedError

    def close(self, session_id: str, outcome: str) -> None:
        raise NotImplementedError


class JsonView(View):
    """One JSON object per event on stdout: ``{seq, stream_id, session_id, type, data, ts}``."""

    def show(self, event: Event) -> None:
        print_json(event.to_dict())

    def close(self, session_id: str, outcome: str) -> None:
        pass


def _esc(text: str) -> str:
    return text.replace("[", "\\[")


class TerminalView(View):
    """The assistant's text on stdout and the steps (tools, reasoning, errors) on
    stderr, one line each.

    On a terminal (``markdown=True``) the text streams into a live preview of its last
    lines and, once finished, is printed rendered as Markdown (rich); otherwise the raw
    text streams as it comes, so pipes and files get plain text.

    :param markdown: render Markdown (needs rich; falls back to plain text without).
    :param log_hint: where agent tracebacks go, named after an error line.
    """

    def __init__(self, *, markdown: bool, log_hint: str | None = None) -> None:
        try:
            from rich.console import Console
        except ImportError:  # the cli extra is not installed: plain lines
            self.err: Any = None
            self.out: Any = None
        else:
            self.err = Console(stderr=True, highlight=False)
            self.out = Console(highlight=False) if markdown else None
        self.log_hint = log_hint
        self.status: Any = None
        self.live: Any = None
        self.text: list[str] = []
        self.at_line_start = True
        self.call_args: dict[object, object] = {}  # call_id -> arguments

    # -- the assistant's text ------------------------------------------------------------

    def _token(self, text: str) -> None:
        if self.out is None:
            sys.stdout.write(text)
            sys.stdout.flush()
            if text:
                self.at_line_start = text.endswith("\n")
            return
        from rich.live import Live
        from rich.text import Text

        self.text.append(text)
        tail = "".join(self.text).splitlines()[-max(3, self.out.height - 2) :]
        if self.live is None:
            self.live = Live(
                console=self.out, transient=True, refresh_per_second=10, vertical_overflow="crop"
            )
            self.live.start()
        self.live.update(Text("\n".join(tail)))

    def _finish_text(self) -> None:
        """End the current text: stop the preview and print it as Markdown."""
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self.text:
            from rich.markdown import Markdown

            self.out.print(Markdown("".join(self.text)))
            self.text = []
        if not self.at_line_start:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self.at_line_start = True

    # -- step lines -------------------------------------------------------------------

    def _note(self, markup: str, plain: str) -> None:
        self._finish_text()
        if self.err is not None:
            self.err.print(markup)
        else:
            print(plain, file=sys.stderr)  # noqa: T201

    def _stop_status(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None

    def show(self, event: Event) -> None:
        t, d = event.type, event.data
        if t == ev.TOKEN:
            self._token(str(d.get("text", "")))
        elif t == ev.MESSAGE:
            self._finish_text()
        elif t == ev.TOOL_STARTED:
            self.call_args[d.get("call_id")] = d.get("arguments")
            label = tool_call_text(d.get("name"), d.get("arguments"))
            self._finish_text()
            if self.err is not None and self.err.is_terminal:
                self.status = self.err.status(f"[bold]{_esc(label)}[/]")
                self.status.start()
        elif t == ev.TOOL_COMPLETED:
            self._stop_status()
            self._tool_line(d)
        elif t == ev.REASONING:
            text = " ".join(str(d.get("text", "")).split())
            if text:
                self._note(f"[dim italic]{_esc(text)}[/]", text)
        elif t == ev.ERROR:
            self._stop_status()
            kind = d.get("error_type") or d.get("type") or "error"
            line = f"{kind}: {d.get('message', '')}".rstrip(": ")
            hint = f" (traceback: {self.log_hint})" if self.log_hint else ""
            self._note(f"[red]error:[/] {_esc(line)}[dim]{_esc(hint)}[/]", f"error: {line}{hint}")
        elif t == ev.CANCELLED:
            self._stop_status()
            self._note("[yellow]cancelled[/] (partial output kept)", "cancelled")

    def _tool_line(self, d: dict[str, Any]) -> None:
        """``✓ name(args) → summary 0.21s``: the tool's own summary if it gave one,
        else the key figures of its result; the error for a failed call."""
        failed = d.get("error") is not None
        mark, colour = ("✗", "red") if failed else ("✓", "green")
        label = tool_call_text(d.get("name"), self.call_args.pop(d.get("call_id"), None))
        summary = str(d["error"]) if failed else d.get("summary") or summarize(d.get("result"))
        secs = f"{float(d.get('duration_s') or 0):.2f}s"
        self._note(
            f"[{colour}]{mark}[/] [bold]{_esc(label)}[/] → {_esc(summary)} [dim]{secs}[/]",
            f"{mark} {label} → {summary} {secs}",
        )

    def finish(self) -> None:
        """End the turn's display: the spinner stopped, the text printed."""
        self._stop_status()
        self._finish_text()

    def close(self, session_id: str, outcome: str) -> None:
        self.finish()
        self._note(f"[dim]session {session_id} ({outcome})[/]", f"session {session_id} ({outcome})")
