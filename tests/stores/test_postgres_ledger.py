"""PostgresStore's tool ledger on a real PostgreSQL server (``RUNTIME_TEST_POSTGRES_DSN``):
fencing across two stores (two processes' connection pools), the lease check made
under the session row's lock, retention, and an older schema migrated in place."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import asyncpg
import pytest
from postgres_server import dropped_after, new_schema, postgres_dsn

from runtime import LeaseLost, Session
from runtime.stores.abc import Lease
from runtime.stores.postgres import MIGRATIONS, PostgresStore


@pytest.fixture
def dsn() -> str:
    return postgres_dsn()


@pytest.fixture
async def schema(dsn: str) -> AsyncIterator[str]:
    names = [new_schema()]
    async with dropped_after(dsn, names):
        yield names[0]


def _lease(owner: str, ttl: float = 60.0) -> Lease:
    return Lease(owner, uuid.uuid4().hex, ttl)


async def _claimed(store: PostgresStore, lease: Lease, sid: str = "leased") -> Session:
    session = Session(sid, title="t", active_stream_id="s1")
    await store.save(session, lease=lease, lease_mode="claim")
    return session


async def test_a_zombie_node_cannot_write_the_ledger_after_another_took_the_lease(
    dsn: str, schema: str
) -> None:
    """Node A's lease expires, node B claims the session (another store, another pool):
    every ledger write A makes with its old lease is refused and changes nothing,
    while B records and finishes the same call."""
    async with (
        PostgresStore(dsn, schema=schema) as a,
        PostgresStore(dsn, schema=schema) as b,
    ):
        old = _lease("node-a", ttl=0.3)
        await _claimed(a, old)
        started = await a.record_tool_call("leased", "s1", "c1", "charge", {"eur": 5}, lease=old)
        await anyio.sleep(0.5)
        new = _lease("node-b")
        await _claimed(b, new)
        with pytest.raises(LeaseLost, match="node-b holds it now"):
            await a.record_tool_result("leased", "s1", "c1", result="paid", lease=old)
        with pytest.raises(LeaseLost):
            await a.record_tool_call("leased", "s1", "c2", "charge", {}, lease=old)
        assert await b.tool_calls("leased", "s1") == [started]
        record = await b.record_tool_call("leased", "s1", "c1", "charge", {}, attempt=1, lease=new)
        assert record == started, "B learns that A started the call: outcome unknown"
        done = await b.record_tool_result("leased", "s1", "c1", error="outcome unknown", lease=new)
        assert await a.tool_calls("leased", "s1") == [done]


async def test_the_lease_check_waits_for_a_claim_in_flight(dsn: str, schema: str) -> None:
    """The ledger write checks the lease under the session row's lock: while another
    transaction holds the row (a claim: ``SELECT … FOR UPDATE``, then a new token) the
    write waits, then sees the new token and writes nothing. A check made before the
    lock would have let the zombie's intent in."""
    async with PostgresStore(dsn, schema=schema) as store:
        mine = _lease("node-a")
        await _claimed(store, mine)
        con = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        try:
            tx = con.transaction()
            await tx.start()
            await con.execute("SELECT 1 FROM sessions WHERE session_id = 'leased' FOR UPDATE")
            outcome: list[BaseException | None] = []

            async def write() -> None:
                try:
                    await store.record_tool_call("leased", "s1", "c1", "grep", {}, lease=mine)
                    outcome.append(None)
                except LeaseLost as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(write)
                waiting = await con.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND query LIKE '%tool_calls%'"
                )
                for _ in range(1000):  # until the write waits on the row (no timing assert)
                    if waiting:
                        break
                    await anyio.sleep(0.01)
                    waiting = await con.fetchval(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE wait_event_type = 'Lock' AND query LIKE '%tool_calls%'"
                    )
                assert waiting == 1, "the ledger write must wait for the row lock"
                await con.execute(
                    "UPDATE sessions SET lease_owner = 'node-b', lease_token = 'other'"
                    " WHERE session_id = 'leased'"
                )
                await tx.commit()
        finally:
            await con.close()
        assert isinstance(outcome[0], LeaseLost)
        assert await store.tool_calls("leased", "s1") == []


async def test_ledger_records_are_pruned_with_the_events(dsn: str, schema: str) -> None:
    async with PostgresStore(dsn, schema=schema, event_retention=1.0) as store:
        await store.save(Session("pruned", title="t"))
        await store.record_tool_call("pruned", "s1", "old", "grep", {})
        await store.record_tool_result("pruned", "s1", "old", result=1)
        await store.record_tool_call("pruned", "s1", "open", "grep", {})
        await anyio.sleep(1.5)
        await store.record_tool_call("pruned", "s1", "fresh", "grep", {})
        await store.prune_events()
        assert [r.call_id for r in await store.tool_calls("pruned", "s1")] == ["fresh"]
    async with PostgresStore(dsn, schema=schema, event_retention=None) as store:
        await store.prune_events()
        assert [r.call_id for r in await store.tool_calls("pruned", "s1")] == ["fresh"]


async def test_a_schema_of_the_previous_version_gains_the_ledger_on_open(
    dsn: str, schema: str
) -> None:
    """A database made before the ledger existed (migrations 1 and 2 applied) is
    migrated at open; its sessions keep working and get a ledger."""
    con = await asyncpg.connect(dsn)
    try:
        await con.execute(f'CREATE SCHEMA "{schema}"')
        await con.execute(f'SET search_path = "{schema}"')
        await con.execute(
            "CREATE TABLE schema_migrations"
            " (version integer PRIMARY KEY, applied_at double precision NOT NULL)"
        )
        for version, sql in MIGRATIONS:
            if version < 3:
                await con.execute(sql)
                await con.execute("INSERT INTO schema_migrations VALUES ($1, 0)", version)
        await con.execute(
            "INSERT INTO sessions (session_id, meta, title, updated_at, message_count, visible)"
            " VALUES ('old', '{\"title\": \"old\"}', 'old', 1, 0, true)"
        )
    finally:
        await con.close()
    async with PostgresStore(dsn, schema=schema) as store:
        assert (await store.load("old")).title == "old"
        record = await store.record_tool_call("old", "s1", "c1", "grep", {"q": 1})
        assert await store.tool_calls("old", "s1") == [record]
