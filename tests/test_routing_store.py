"""The route table kept through the store's public document API
(``RouteTable.on_store``): the same table on MemoryStore, FileStore (the ``routes.json``
file at the root, as ``RouteTable.for_root`` reads it) and PostgresStore, where two
tables on one database, as two processes would hold, lose no update."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from postgres_server import dropped_after, new_schema, postgres_dsn

from runtime import FileStore, MemoryStore
from runtime.routing import RouteTable


async def test_memory_store_table() -> None:
    async with MemoryStore() as store:
        table = RouteTable.on_store(store)
        entry = await table.get_or_create("agent:main:telegram:dm:42", display_name="Ann")
        again = await table.get_or_create("agent:main:telegram:dm:42")
        assert again.session_id == entry.session_id
        assert [e.session_key for e in await table.entries()] == ["agent:main:telegram:dm:42"]
        assert store.documents["routes.json"][1] == 2  # two durable writes
        assert await table.remove("agent:main:telegram:dm:42") is True
        assert await table.entries() == []
        assert store.documents["routes.json"][1] == 3


async def test_file_store_table_is_the_routes_file(tmp_path: Path) -> None:
    async with FileStore(tmp_path) as store:
        table = RouteTable.on_store(store)
        entry = await table.get_or_create("agent:main:slack:group:7")
    by_path = RouteTable.for_root(tmp_path)
    assert (await by_path.get("agent:main:slack:group:7")) == entry
    async with FileStore(tmp_path) as store:
        reopened = RouteTable.on_store(store)
        assert (await reopened.get("agent:main:slack:group:7")) == entry


async def test_two_tables_on_one_postgres_database_lose_no_update() -> None:
    dsn = postgres_dsn()
    from runtime.stores.postgres import PostgresStore

    schemas = [new_schema()]
    async with (
        dropped_after(dsn, schemas),
        PostgresStore(dsn, schema=schemas[0]) as a,
        PostgresStore(dsn, schema=schemas[0]) as b,
    ):
        ta, tb = RouteTable.on_store(a), RouteTable.on_store(b)

        async def add(table: RouteTable, prefix: str) -> None:
            for i in range(15):
                await table.get_or_create(f"agent:main:web:dm:{prefix}{i}")

        async with anyio.create_task_group() as tg:
            tg.start_soon(add, ta, "a")
            tg.start_soon(add, tb, "b")
        keys = {e.session_key for e in await ta.entries()}
        assert keys == {f"agent:main:web:dm:{p}{i}" for p in "ab" for i in range(15)}
        assert {e.session_key for e in await tb.entries()} == keys


@pytest.mark.parametrize("name", ["", ".x", "a/b"])
async def test_bad_document_names_are_refused(name: str) -> None:
    async with MemoryStore() as store:
        with pytest.raises(ValueError, match="document name"):
            await store.write_document(name, b"x", expected_version=None)


async def _create_db(dsn: str, name: str, drop: bool = False) -> None:
    import asyncpg

    con = await asyncpg.connect(dsn)
    try:
        verb = (
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
            if drop
            else f'CREATE DATABASE "{name}"'
        )
        await con.execute(verb)
    finally:
        await con.close()


async def test_cli_routes_on_a_postgres_store() -> None:
    """``runtime routes list|prune --store postgresql://…`` in a real subprocess."""
    import subprocess
    import sys
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import orjson

    from runtime.stores.postgres import PostgresStore

    dsn = postgres_dsn()
    name = "routes_cli_" + uuid.uuid4().hex[:10]
    await _create_db(dsn, name)
    url = urlunsplit(urlsplit(dsn)._replace(path="/" + name))
    try:
        async with PostgresStore(url) as store:
            entry = await RouteTable.on_store(store).get_or_create("agent:main:web:dm:1")

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "runtime", "routes", *args, "--store", url, "--json"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        listed = await anyio.to_thread.run_sync(cli, "list")
        assert listed.returncode == 0, listed.stderr
        assert [r["session_id"] for r in orjson.loads(listed.stdout)] == [entry.session_id]
        pruned = await anyio.to_thread.run_sync(cli, "prune", "--max-age-days", "1")
        assert pruned.returncode == 0, pruned.stderr
        assert orjson.loads(pruned.stdout) == {"removed": 0}
    finally:
        await _create_db(dsn, name, drop=True)
