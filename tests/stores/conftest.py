"""Store backends for the store tests: each test taking ``backend`` runs once per backend."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from postgres_server import dropped_after, new_schema, postgres_dsn

from runtime.stores.abc import Store
from runtime.stores.files import FileStore
from runtime.stores.memory import MemoryStore
from runtime.testing import Reopen, StoreFactory


@dataclass(frozen=True)
class Backend:
    """How the conformance checks make stores of one backend (see :mod:`runtime.testing`)."""

    name: str
    factory: StoreFactory
    reopen: Reopen | None


def _memory_backend() -> Backend:
    return Backend("memory", MemoryStore, None)


def _memory_reopened_backend() -> Backend:
    """MemoryStore with a "restart" that hands the stored dicts to a new instance.

    A MemoryStore's data cannot outlive its object, so this models a restart of a
    process whose durable state is exactly those dicts; the new instance has its own
    unsaved sessions. It runs the checks' across-restart branches on the reference
    backend.
    """

    def reopen(store: Store) -> MemoryStore:
        assert isinstance(store, MemoryStore)
        again = MemoryStore()
        again.sessions = store.sessions
        again.backups = store.backups
        again.tombstones = store.tombstones
        again.events = store.events
        again.documents = store.documents
        again.ledger = store.ledger
        return again

    return Backend("memory-reopened", MemoryStore, reopen)


def _file_backend(tmp_path: Path) -> Backend:
    """FileStore on a new directory per store; a restart reopens the same root."""
    counter = itertools.count()

    def factory() -> FileStore:
        return FileStore(tmp_path / f"store{next(counter)}")

    def reopen(store: Store) -> FileStore:
        assert isinstance(store, FileStore)
        return FileStore(store.root)

    return Backend("files", factory, reopen)


def _postgres_backend(dsn: str, schemas: list[str]) -> Backend:
    """PostgresStore on a fresh schema of the test server per store; a restart opens a
    new store (a new connection pool) on the same schema."""
    from runtime.stores.postgres import PostgresStore

    def factory() -> PostgresStore:
        schemas.append(new_schema())
        return PostgresStore(dsn, schema=schemas[-1], max_size=4)

    def reopen(store: Store) -> PostgresStore:
        assert isinstance(store, PostgresStore)
        return PostgresStore(dsn, schema=store.schema, max_size=4)

    return Backend("postgres", factory, reopen)


@pytest.fixture(params=["memory", "memory-reopened", "files", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A store backend: ``MemoryStore()``, MemoryStore across a modelled restart,
    ``FileStore(root)`` on a real temporary directory (reopened on the same root), and
    ``PostgresStore`` on the real server of ``RUNTIME_TEST_POSTGRES_DSN`` (skipped
    without it, failing under ``CI=true``)."""
    if request.param == "memory":
        yield _memory_backend()
    elif request.param == "memory-reopened":
        yield _memory_reopened_backend()
    elif request.param == "files":
        yield _file_backend(tmp_path)
    else:
        dsn = postgres_dsn()
        schemas: list[str] = []
        async with dropped_after(dsn, schemas):
            yield _postgres_backend(dsn, schemas)
