"""An LLM research agent: a real model answers with the research example's tools.

It runs :func:`runtime.agents.openai_chat` against any OpenAI-compatible Chat Completions API
(OpenAI, Ollama, vLLM, llama.cpp's server …) and gives the model three tools over a corpus of
Python source (the research example's, ``_research_tools.py``; files are read through
aiofiles): ``list_packages``, ``search`` and ``read_region``. Tokens, reasoning, tool calls,
usage, checkpoints, cancel and crash recovery all go through the runtime.

Environment:

* ``RUNTIME_MODEL`` -- the model name (required), e.g. ``gpt-4o-mini``, ``llama3.2``.
* ``OPENAI_BASE_URL`` -- the API's ``…/v1`` URL (default: OpenAI's).
* ``OPENAI_API_KEY`` -- the key; for a server of your own (``OPENAI_BASE_URL`` set) it may be
  left unset.
* ``RUNTIME_TOOLS`` -- ``research`` (default) or ``none``: tiny local models answer better
  without tool definitions in their prompt.
* ``RUNTIME_MAX_TOKENS`` -- at most this many tokens per model call (default: the server's).
* ``RESEARCH_CORPUS`` -- the directory the tools search (default: the standard library).

Run it::

    RUNTIME_MODEL=gpt-4o-mini OPENAI_API_KEY=sk-… \\
        runtime run examples/llm_agent.py:agent "Where does the standard library use TaskGroup?"
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import _research_tools as tools  # noqa: E402

if TYPE_CHECKING:
    from runtime import Agent, Turn

__all__ = ["agent", "make_agent", "research_tools"]

SYSTEM = (
    "You answer questions about a corpus of Python source code. Use the tools to look "
    "things up, and cite every claim as path:line from the tool results. Be concise."
)
TOP_MATCHES = 12  # matches a search shows the model


def _term(text: str) -> tools.Term:
    text = text.strip()
    if tools._IDENTIFIER.fullmatch(text):
        return tools.Term(text, "identifier", text)
    return tools.Term(text, "quoted", text)


def research_tools(corpus: tools.Corpus) -> list[Callable[..., Any]]:
    """The research tools as async functions a model can call (schemas come from their
    signatures and docstrings)."""

    async def list_packages(scope: list[str] | None = None) -> tools.Json:
        """List the packages of the corpus with their number of files and size in bytes.

        :param scope: only these top-level packages (all when omitted).
        """
        return await anyio.to_thread.run_sync(tools.list_packages, corpus, scope or [])

    async def search(term: str, package: str | None = None) -> tools.Json:
        """Find the lines that use a name or phrase, classified as definition, import,
        export, call, reference, string or comment, with counts per package.

        :param term: an identifier such as TaskGroup or asyncio.timeout, or a phrase.
        :param package: one package from list_packages (the whole corpus when omitted).
        """
        wanted = _term(term)
        units = await anyio.to_thread.run_sync(corpus.units)
        if package is not None:
            units = [u for u in units if u.name == package]
            if not units:
                raise LookupError(f"no package {package!r}: call list_packages for the names")
        results = []
        for unit in units:
            await tools.read_files(corpus, unit.files)
            results.append(await anyio.to_thread.run_sync(tools.search, corpus, wanted, unit))
        tally = tools.count(wanted, results)
        matches = sorted(
            (m for r in results for m in r["matches"]),
            key=lambda m: (tools.KINDS.index(m["kind"]), m["path"], m["line"]),
        )
        return {
            "term": wanted.needle,
            "matching_lines": tally["matching_lines"],
            "files": tally["files"],
            "by_kind": tally["by_kind"],
            "by_package": tally["by_package"][:TOP_MATCHES],
            "matches": matches[:TOP_MATCHES],
        }

    async def read_region(path: str, line: int) -> tools.Json:
        """Read the lines around path:line and the class/def that encloses it.

        :param path: a path from search results, relative to the corpus.
        :param line: the 1-based line number.
        """
        await anyio.to_thread.run_sync(corpus.files)
        await tools.read_files(corpus, [path] if path in corpus.files() else [])
        return await anyio.to_thread.run_sync(tools.read_region, corpus, path, line)

    return [list_packages, search, read_region]


def make_agent(environ: dict[str, str] | None = None) -> Agent:
    """The agent the environment describes (see the module docstring).

    :raises ValueError: naming the variable that is missing or wrong.
    """
    from runtime.agents import openai_chat

    env = dict(os.environ if environ is None else environ)
    model = env.get("RUNTIME_MODEL", "").strip()
    if not model:
        raise ValueError(
            "RUNTIME_MODEL is not set: name the model, e.g. RUNTIME_MODEL=gpt-4o-mini "
            "(OpenAI) or RUNTIME_MODEL=llama3.2 (Ollama)"
        )
    base_url = env.get("OPENAI_BASE_URL") or None
    api_key = env.get("OPENAI_API_KEY") or ("unused" if base_url else None)
    kind = env.get("RUNTIME_TOOLS", "research").strip() or "research"
    if kind not in ("research", "none"):
        raise ValueError(f"RUNTIME_TOOLS={kind!r}: must be 'research' or 'none'")
    raw_max = env.get("RUNTIME_MAX_TOKENS", "").strip()
    if raw_max and not (raw_max.isdigit() and int(raw_max) > 0):
        raise ValueError(f"RUNTIME_MAX_TOKENS={raw_max!r}: must be an integer > 0")
    corpus = tools.Corpus(Path(_settings(env)))
    return openai_chat(
        model=model,
        base_url=base_url,
        api_key=api_key,
        tools=research_tools(corpus) if kind == "research" else [],
        system=SYSTEM if kind == "research" else None,
        options={"max_tokens": int(raw_max)} if raw_max else None,
    )


def _settings(env: dict[str, str]) -> str:
    from research_agent import load_settings

    return str(load_settings(env).corpus)


_made: dict[tuple[str, ...], Agent] = {}
_KEYS = (
    "RUNTIME_MODEL",
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "RUNTIME_TOOLS",
    "RUNTIME_MAX_TOKENS",
    "RESEARCH_CORPUS",
)


async def agent(turn: Turn) -> None:
    """Answer ``turn.user_message`` with the model the environment names."""
    key = tuple(os.environ.get(k, "") for k in _KEYS)
    if key not in _made:
        _made[key] = make_agent()
    await _made[key](turn)
