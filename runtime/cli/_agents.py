"""Resolving an ``AGENT`` spec: ``path/file.py:function`` or ``module:function``."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from .._exceptions import AgentLoadError
from .._runner import Agent

__all__ = ["load_agent"]


def load_agent(spec: str) -> Agent:
    """Import the agent named by ``spec``.

    ``path/file.py:function`` loads the file (its directory is put first on
    ``sys.path`` so that it can import its siblings); ``package.module:function``
    imports the module.

    :raises AgentLoadError: naming the spec and what is wrong with it.
    """
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name.isidentifier():
        raise AgentLoadError(
            f"invalid agent {spec!r}: expected 'path/file.py:function' or 'module:function'"
        )
    if target.endswith(".py"):
        path = Path(target)
        if not path.is_file():
            raise AgentLoadError(f"invalid agent {spec!r}: no file {target!r}")
        module_name = f"_runtime_agent_{path.stem}"
        sys.path.insert(0, str(path.resolve().parent))
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise AgentLoadError(f"invalid agent {spec!r}: cannot load {target!r}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise AgentLoadError(f"agent {spec!r}: importing {target!r} failed: {exc!r}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise AgentLoadError(
                f"invalid agent {spec!r}: cannot import {target!r}: {exc}"
            ) from exc
    agent = getattr(module, name, None)
    if agent is None:
        raise AgentLoadError(f"invalid agent {spec!r}: {target!r} has no attribute {name!r}")
    if not inspect.iscoroutinefunction(agent) and not inspect.iscoroutinefunction(
        getattr(agent, "__call__", None)  # noqa: B004 - an async callable object is fine
    ):
        raise AgentLoadError(
            f"invalid agent {spec!r}: {name!r} must be 'async def {name}(turn: Turn) -> None'"
        )
    return agent  # type: ignore[no-any-return]
