"""Plain Python functions as tools a model can call: JSON schema from the signature
(pydantic) and the docstring, argument validation, and the call itself."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, cast, get_type_hints

import anyio.to_thread

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["FunctionTool", "function_tool"]

_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_SPHINX_PARAM = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+):\s*(.*)$")
_GOOGLE_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_GOOGLE_PARAM = re.compile(r"^(\s+)(\w+)(?:\s*\([^)]*\))?:\s*(.*)$")
_SECTION = re.compile(r"^[A-Z]\w*( \w+)?:\s*$")


def _docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) from a Sphinx (``:param x: …``) or
    Google (``Args:`` section) docstring; continuation lines are joined."""
    summary: list[str] = []
    params: dict[str, str] = {}
    current: str | None = None
    section: str | None = None  # None (the description), "params", "google" or "other"
    indent: str | None = None
    for line in inspect.cleandoc(doc).splitlines():
        text = line.strip()
        sphinx = _SPHINX_PARAM.match(line)
        google = _GOOGLE_PARAM.match(line) if section == "google" else None
        if sphinx:
            section, current = "params", sphinx.group(1)
            params[current] = sphinx.group(2).strip()
        elif _GOOGLE_SECTION.match(line):
            section, current, indent = "google", None, None
        elif google and indent in (None, google.group(1)):
            indent, current = google.group(1), google.group(2)
            params[current] = google.group(3).strip()
        elif current is not None and text and line[:1].isspace():
            params[current] = f"{params[current]} {text}"
        elif text.startswith(":") or _SECTION.match(line):
            section, current = "other", None  # :returns:, :raises:, Returns: …
        elif section is None:
            summary.append(line)
        elif not text:
            current = None
    return "\n".join(summary).strip(), params


class FunctionTool:
    """A Python function (sync or async) offered to a model as a tool.

    :ivar name: the tool's name (``^[a-zA-Z0-9_-]{1,64}$``, the API's rule).
    :ivar description: what the model is told the tool does.
    :ivar parameters: the JSON schema of the arguments (an object).
    :ivar idempotent: a resumed turn may run a call of it again that started before the
        process stopped and left no result (see :class:`runtime.Tool`).
    :ivar reconcile: ``reconcile(record) -> result`` for such a call, or ``None``.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        idempotent: bool = False,
        reconcile: Callable[[Any], Any] | None = None,
    ) -> None:
        """:raises ValueError: for a name the API refuses.
        :raises TypeError: for ``*args``/``**kwargs`` or positional-only parameters,
            which a JSON object of arguments cannot fill."""
        from pydantic import Field, create_model

        self.fn = fn
        self.idempotent = bool(idempotent)
        self.reconcile = reconcile
        self.name = fn.__name__ if name is None else name
        if not _TOOL_NAME.fullmatch(self.name):
            raise ValueError(f"invalid tool name {self.name!r}: must match ^[a-zA-Z0-9_-]{{1,64}}$")
        summary, docs = _docstring(fn.__doc__ or "")
        self.description = summary if description is None else description
        hints = get_type_hints(fn)
        fields: dict[str, Any] = {}
        for p in inspect.signature(fn).parameters.values():
            if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                raise TypeError(
                    f"tool {self.name!r}: parameter {p.name!r} is {p.kind.description}; "
                    "a tool takes named parameters only"
                )
            default = ... if p.default is p.empty else p.default
            fields[p.name] = (
                hints.get(p.name, Any),
                Field(default, description=docs.get(p.name)),
            )
        self._model: type[BaseModel] = create_model(f"{self.name}_arguments", **fields)
        schema = self._model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        self.parameters: dict[str, Any] = schema
        self._async = inspect.iscoroutinefunction(fn)

    def spec(self) -> dict[str, Any]:
        """The entry of the request's ``tools`` list."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}

    async def __call__(self, arguments: Mapping[str, Any]) -> Any:
        """Validate ``arguments`` and call the function: awaited when async, else in a
        worker thread (abandoned, still running, if the turn is cancelled).

        :raises pydantic.ValidationError: for arguments that do not fit the signature.
        """
        validated = self._model.model_validate(dict(arguments))
        kwargs = {name: getattr(validated, name) for name in type(validated).model_fields}
        if self._async:
            return await cast("Callable[..., Awaitable[Any]]", self.fn)(**kwargs)
        call = functools.partial(self.fn, **kwargs)
        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r})"


def function_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    idempotent: bool = False,
    reconcile: Callable[[Any], Any] | None = None,
) -> FunctionTool:
    """Offer ``fn`` to a model as a tool. Its JSON schema comes from the signature (types
    through pydantic) and the docstring: the first paragraphs describe the tool, and
    ``:param x: …`` lines (or a Google ``Args:`` section) describe the parameters.

    :param name: the tool's name (default ``fn.__name__``).
    :param description: overrides the docstring's description.
    :param idempotent: a resumed turn may run again a call of it whose outcome is
        unknown (default ``False``: the model gets an "outcome unknown" result).
    :param reconcile: ``reconcile(record: ToolCallRecord) -> result``: looks up the
        outcome of such a call instead (see :class:`runtime.Tool`).
    :raises ValueError, TypeError: as :class:`FunctionTool`.
    """
    return FunctionTool(
        fn, name=name, description=description, idempotent=idempotent, reconcile=reconcile
    )
