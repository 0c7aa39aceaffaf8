"""One adapter per system for W1-W3: build a session of N messages, append one message
durably, load it back. Every adapter gets the same message dicts (``_shapes``)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol

from ._rt import runtime_missing
from .peers import missing

__all__ = ["LABELS", "SESSION_SYSTEMS", "SessionSystem", "make_system", "system_missing"]

#: W1-W3 systems, in table order
SESSION_SYSTEMS = (
    "runtime",
    "jsonl_append",
    "jsonl_thread",
    "openai_sqlite",
    "hermes_rewrite",
    "langgraph_sqlite",
)

LABELS = {
    "runtime": "runtime FileStore",
    "jsonl_append": "JSON lines append + fsync",
    "jsonl_thread": "JSON lines append + fsync in a worker thread",
    "openai_sqlite": "OpenAI Agents SQLiteSession",
    "hermes_rewrite": "whole-file JSON rewrite (hermes-webui)",
    "langgraph_sqlite": "LangGraph AsyncSqliteSaver",
    "orjson_loads": "orjson.loads of one file (baseline)",
}


class SessionSystem(Protocol):
    """What W1-W3 do with a system. Each call is complete (durable) when it returns."""

    async def build(self, messages: list[dict[str, Any]]) -> None: ...
    async def append(self, message: dict[str, Any]) -> None: ...
    async def reopen(self) -> None: ...
    async def load(self) -> int: ...
    async def close(self) -> None: ...


class _Runtime:
    """``runtime.stores.files.FileStore``: full ``save()`` to build, then each append is
    ``save(session, skip_index=True, delta=SaveDelta.appended(n))`` (the checkpoint
    path, with the delta the runner passes); loads go through a fresh store instance
    opened on the same root."""

    def __init__(self, workdir: Path) -> None:
        from runtime.stores.abc import SaveDelta
        from runtime.stores.files import FileStore

        self._cls = FileStore
        self.root = workdir / "store"
        self.store: Any = FileStore(self.root)
        self.session: Any = None
        self._delta = SaveDelta.appended

    async def build(self, messages: list[dict[str, Any]]) -> None:
        await self.store.open()
        self.session = self.store.new_session(title="bench")
        self.session.messages.extend(messages)
        await self.store.save(self.session)

    async def append(self, message: dict[str, Any]) -> None:
        base = len(self.session.messages)
        self.session.messages.append(message)
        # what the runner's checkpoint passes: one message appended, no field changed
        await self.store.save(self.session, skip_index=True, delta=self._delta(base))

    async def reopen(self) -> None:
        await self.store.aclose()
        self.store = self._cls(self.root)
        await self.store.open()
        # later appends go through the new instance, as a restarted process's would
        self.session = await self.store.load(self.session.session_id)

    async def load(self) -> int:
        session = await self.store.load(self.session.session_id)
        return len(session.messages)

    async def settle(self) -> None:
        """Let the compaction a load scheduled in the background finish (untimed), so
        it never runs beside the next system's timed work."""
        await self.store.wait_compactions()

    async def close(self) -> None:
        await self.store.aclose()


class _Jsonl:
    def __init__(self, workdir: Path) -> None:
        from .peers.jsonl import JsonlLog

        self.log = JsonlLog(workdir / "session.jsonl")

    async def build(self, messages: list[dict[str, Any]]) -> None:
        self.log.append(messages)

    async def append(self, message: dict[str, Any]) -> None:
        self.log.append([message])

    async def reopen(self) -> None:
        return None

    async def load(self) -> int:
        return len(self.log.load())

    async def close(self) -> None:
        self.log.close()


class _JsonlThread(_Jsonl):
    """The JSON-lines baseline as an async server must run it: each append and load in
    a worker thread (``asyncio.to_thread``), so the event loop never waits on the disk,
    which the runtime's stores guarantee too. What the hand-off costs beside the plain
    row is what any store that keeps the loop free pays."""

    async def build(self, messages: list[dict[str, Any]]) -> None:
        await asyncio.to_thread(self.log.append, messages)

    async def append(self, message: dict[str, Any]) -> None:
        await asyncio.to_thread(self.log.append, [message])

    async def load(self) -> int:
        return len(await asyncio.to_thread(self.log.load))


class _Hermes:
    def __init__(self, workdir: Path) -> None:
        from .peers.hermes import HermesSession

        self.session = HermesSession(workdir, "bench")

    async def build(self, messages: list[dict[str, Any]]) -> None:
        self.session.messages.extend(messages)
        self.session.save()

    async def append(self, message: dict[str, Any]) -> None:
        self.session.messages.append(message)
        self.session.save()

    async def reopen(self) -> None:
        return None

    async def load(self) -> int:
        return len(self.session.load()["messages"])

    async def close(self) -> None:
        return None


class _OpenAI:
    def __init__(self, workdir: Path) -> None:
        from .peers.openai_agents import OpenAISession

        self.session = OpenAISession(workdir / "agents.db")

    async def build(self, messages: list[dict[str, Any]]) -> None:
        await self.session.append(messages)

    async def append(self, message: dict[str, Any]) -> None:
        await self.session.append([message])

    async def reopen(self) -> None:
        return None

    async def load(self) -> int:
        return len(await self.session.load())

    async def close(self) -> None:
        self.session.close()


class _LangGraph:
    def __init__(self, workdir: Path) -> None:
        from .peers.langgraph import LangGraphSession

        self.session = LangGraphSession(workdir / "checkpoints.db")
        self._entered = False

    async def build(self, messages: list[dict[str, Any]]) -> None:
        await self.session.__aenter__()
        self._entered = True
        await self.session.append(messages)

    async def append(self, message: dict[str, Any]) -> None:
        await self.session.append([message])

    async def reopen(self) -> None:
        return None

    async def load(self) -> int:
        return len(await self.session.load())

    async def close(self) -> None:
        if self._entered:
            await self.session.__aexit__(None, None, None)


_FACTORIES = {
    "runtime": _Runtime,
    "jsonl_append": _Jsonl,
    "jsonl_thread": _JsonlThread,
    "hermes_rewrite": _Hermes,
    "openai_sqlite": _OpenAI,
    "langgraph_sqlite": _LangGraph,
}


def system_missing(name: str) -> str | None:
    """Why system ``name`` cannot run here, or ``None``."""
    if name == "runtime":
        return runtime_missing("filestore")
    return missing(name)


def make_system(name: str, workdir: Path) -> SessionSystem:
    """A fresh adapter for ``name`` keeping its files under ``workdir``.

    :raises KeyError: for an unknown system.
    """
    system: SessionSystem = _FACTORIES[name](workdir)
    return system
