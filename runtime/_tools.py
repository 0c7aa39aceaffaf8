"""Tools with a policy for resumed turns: :class:`Tool`, run through
:meth:`Turn.call_tool` / :meth:`Turn.run_tool` and the store's tool ledger."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

import anyio.to_thread

if TYPE_CHECKING:
    from .stores.abc import ToolCallRecord

__all__ = ["LedgerTool", "Tool"]

#: ``reconcile(record) -> result``: looks up what became of a call that started before
#: the process stopped and left no result (sync or async).
Reconcile = Callable[["ToolCallRecord"], Any]


class LedgerTool(Protocol):
    """What :meth:`Turn.run_tool` needs of a tool: :class:`Tool` and
    :class:`runtime.agents.FunctionTool` have it."""

    name: str
    idempotent: bool
    reconcile: Reconcile | None

    def __call__(self, arguments: Mapping[str, Any]) -> Awaitable[Any]: ...


class Tool:
    """A function offered as a tool, with what a resumed turn may do with it.

    Run it with ``await turn.call_tool(tool, arguments, call_id=...)``. Its intent is
    durable in the store's tool ledger before ``fn`` runs and its result when ``fn``
    returns; a resumed turn that calls it again with the same ``call_id`` gets the
    stored result without running it. A call that started before the process stopped
    and has no result is run again only if ``idempotent``; otherwise ``reconcile``
    decides its result, and without one the call gets an "outcome unknown" result
    (:func:`runtime.outcome_unknown`).

    :param fn: called as ``fn(**arguments)``; a coroutine function is awaited, a plain
        function runs in a worker thread.
    :param name: the tool's name (default ``fn.__name__``).
    :param idempotent: running it twice has the effect of running it once (a read, a
        put with a key); default ``False``.
    :param reconcile: ``reconcile(record: ToolCallRecord) -> result`` (sync or async):
        looks up the outcome of a call that started and left no result (e.g. asks the
        payment API by the call id used as idempotency key). What it returns becomes the
        call's result; to say it cannot tell, return
        ``runtime.outcome_unknown(record, record.call_id, record.name)``; an exception
        fails the call with that error.
    :param summary: ``summary(result) -> str``: one short line for people, sent in
        ``tool.completed``.
    :raises TypeError: if ``fn``, ``reconcile`` or ``summary`` is not callable.
    :raises ValueError: for an empty name.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        idempotent: bool = False,
        reconcile: Reconcile | None = None,
        summary: Callable[[Any], str] | None = None,
    ) -> None:
        for label, value in (("fn", fn), ("reconcile", reconcile), ("summary", summary)):
            if value is not None and not callable(value):
                raise TypeError(f"invalid {label} {value!r}: must be callable")
        self.fn = fn
        self.name = getattr(fn, "__name__", "") if name is None else name
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"invalid tool name {self.name!r}: must be a non-empty string")
        self.idempotent = bool(idempotent)
        self.reconcile = reconcile
        self.summary = summary
        self._async = inspect.iscoroutinefunction(fn)

    async def __call__(self, arguments: Mapping[str, Any]) -> Any:
        """Call ``fn(**arguments)``."""
        if self._async:
            return await cast("Callable[..., Awaitable[Any]]", self.fn)(**arguments)
        call = functools.partial(self.fn, **arguments)
        return await anyio.to_thread.run_sync(call)

    def __repr__(self) -> str:
        flags = ", idempotent" if self.idempotent else ""
        return f"Tool({self.name!r}{flags})"


async def call_maybe_async(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, awaited if it returns an awaitable."""
    value = fn(*args)
    if inspect.isawaitable(value):
        value = await value
    return value
