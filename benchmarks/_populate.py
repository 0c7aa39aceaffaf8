"""Stores holding S sessions for W7 and W8, built once per run and shared.

The runtime's: a FileStore filled through its public API (``save()``, full saves, 64
at a time). The hermes-webui baseline's: S session files plus its ``_index.json``.
Each session holds three messages of the standard shapes (user, assistant, tool).
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio

from ._config import Context
from ._shapes import message
from .peers.hermes import HermesSession, compact_row, write_index

__all__ = ["hermes_store", "runtime_store"]

_CONCURRENCY = 64


async def runtime_store(ctx: Context, s: int) -> Path:
    """The root of a FileStore holding ``s`` sessions (built on first use)."""
    key = f"runtime_store_{s}"
    root = ctx.cache.get(key)
    if isinstance(root, Path):
        return root
    from runtime.stores.files import FileStore

    root = ctx.tmp / f"w78-runtime-{s}"
    msgs = [message(i) for i in range(3)]
    async with FileStore(root) as store:
        limiter = anyio.Semaphore(_CONCURRENCY)

        async def save(i: int) -> None:
            async with limiter:
                session = store.new_session(title=f"session {i}")
                session.messages.extend(msgs)
                await store.save(session)

        async with anyio.create_task_group() as tg:
            for i in range(s):
                tg.start_soon(save, i)
    ctx.cache[key] = root
    return root


def _hermes_sync(directory: Path, s: int) -> None:
    directory.mkdir()
    msgs = [message(i) for i in range(3)]
    rows = []
    for i in range(s):
        session = HermesSession(directory, f"s{i:07d}", title=f"session {i}")
        session.meta["updated_at"] = session.meta["created_at"] = 1_763_700_000.0 + i
        session.messages = msgs
        session.save(durable=False)
        rows.append(compact_row({**session.meta, "messages": msgs}))
    write_index(directory, rows)
    json.loads((directory / "_index.json").read_bytes())  # sanity: the index parses


async def hermes_store(ctx: Context, s: int) -> Path:
    """A hermes-webui style directory of ``s`` session files and ``_index.json``."""
    key = f"hermes_store_{s}"
    directory = ctx.cache.get(key)
    if isinstance(directory, Path):
        return directory
    directory = ctx.tmp / f"w78-hermes-{s}"
    await anyio.to_thread.run_sync(_hermes_sync, directory, s)
    ctx.cache[key] = directory
    return directory
