"""PostgresStore on a real PostgreSQL server (``RUNTIME_TEST_POSTGRES_DSN``): what the
conformance suite cannot see from outside — the schema, O(new data) checkpoints, the
listing's index, error translation, retries after a lost connection, retention, the bound
on a statement (the server's statement_timeout and the store's watchdog)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import orjson
import pytest
from postgres_server import dropped_after, new_schema, postgres_dsn

from runtime import Event, LeaseLost, Runtime, SaveDelta, Session, StoreError
from runtime.stores.abc import Lease
from runtime.stores.postgres import MIGRATIONS, PostgresStore


@pytest.fixture
def dsn() -> str:
    return postgres_dsn()


@pytest.fixture
async def schemas(dsn: str) -> AsyncIterator[list[str]]:
    names: list[str] = []
    async with dropped_after(dsn, names):
        yield names


def _store(dsn: str, schemas: list[str], **kw: object) -> PostgresStore:
    schemas.append(new_schema())
    return PostgresStore(dsn, schema=schemas[-1], **kw)  # type: ignore[arg-type]


async def _sql(dsn: str, schema: str, query: str, *args: object) -> list[asyncpg.Record]:
    con = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        return list(await con.fetch(query, *args))
    finally:
        await con.close()


async def test_migrations_are_numbered_and_applied_once(dsn: str, schemas: list[str]) -> None:
    async with _store(dsn, schemas):
        pass
    async with PostgresStore(dsn, schema=schemas[-1]):  # a second open migrates nothing
        pass
    rows = await _sql(dsn, schemas[-1], "SELECT version FROM schema_migrations ORDER BY 1")
    assert [r[0] for r in rows] == [v for v, _ in MIGRATIONS]
    tables = await _sql(
        dsn,
        schemas[-1],
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1",
        schemas[-1],
    )
    assert {r[0] for r in tables} >= {
        "sessions",
        "messages",
        "backups",
        "tombstones",
        "events",
        "documents",
    }


async def test_checkpoint_inserts_only_new_rows(dsn: str, schemas: list[str]) -> None:
    """A checkpoint rewrites at most the last stored message and inserts the new ones:
    the other rows keep their physical version (``xmin``, the inserting transaction)."""
    async with _store(dsn, schemas) as store:
        s = Session("ck", messages=[{"role": "user", "content": str(i)} for i in range(50)])
        await store.save(s)
        before = {
            r[0]: r[1]
            for r in await _sql(
                dsn, schemas[-1], "SELECT idx, xmin::text FROM messages WHERE session_id = 'ck'"
            )
        }
        s.messages.append({"role": "assistant", "content": "new"})
        await store.save(s, skip_index=True)
        after = {
            r[0]: r[1]
            for r in await _sql(
                dsn, schemas[-1], "SELECT idx, xmin::text FROM messages WHERE session_id = 'ck'"
            )
        }
    changed = {i for i in after if before.get(i) != after[i]}
    assert changed == {49, 50}


async def test_a_turn_start_writes_no_stored_message_again(dsn: str, schemas: list[str]) -> None:
    """``Runtime.start_turn``'s claim saves the session's fields, not its history: every
    stored message row keeps its physical version (``xmin``), also when the start closes
    a dead turn first (a repair only appends); a rewind deletes the rows it drops."""
    go = anyio.Event()

    async def agent(turn: Any) -> None:
        await go.wait()
        await turn.reply("ok")

    query = "SELECT idx, xmin::text FROM messages WHERE session_id = 'claim'"
    async with _store(dsn, schemas) as store, Runtime(store, agent) as rt:
        s = Session("claim", messages=[{"role": "user", "content": str(i)} for i in range(50)])
        await store.save(s)
        before = {r[0]: r[1] for r in await _sql(dsn, schemas[-1], query)}
        stream_id = await rt.start_turn("claim", "go")
        claimed = {r[0]: r[1] for r in await _sql(dsn, schemas[-1], query)}
        go.set()
        await rt.wait_stream(stream_id)
        ended = {r[0]: r[1] for r in await _sql(dsn, schemas[-1], query)}
        go = anyio.Event()
        stream_id = await rt.start_turn("claim", "again", rewind_to=10)
        rewound = {r[0]: r[1] for r in await _sql(dsn, schemas[-1], query)}
        go.set()
        await rt.wait_stream(stream_id)
    assert claimed == before
    assert {i: ended[i] for i in before} == before
    assert rewound == {i: ended[i] for i in range(10)}


async def test_every_checkpoint_shape_writes_what_it_names(dsn: str, schemas: list[str]) -> None:
    """A checkpoint's statement depends on its shape (fields named or not, stored
    messages rewritten or not, events or not); each one writes the new rows, rewrites
    the named ones in place and leaves the rest as they were (``xmin``), and the
    session loads whole, with the fields it named."""
    async with _store(dsn, schemas) as store:
        s = Session("shapes", messages=[{"role": "user", "content": "0"}], active_stream_id="st")
        await store.save(s)
        seq = 0

        async def rows() -> dict[int, str]:
            found = await _sql(
                dsn,
                schemas[-1],
                "SELECT idx, xmin::text FROM messages WHERE session_id = $1",
                "shapes",
            )
            return {r[0]: r[1] for r in found}

        # (messages rewritten from the end, messages appended, events, title named);
        # rewritten None: no delta, the store rewrites the last stored message itself
        # and writes every field
        shapes = [
            (0, 1, 0, False),
            (0, 2, 3, False),
            (1, 1, 0, False),
            (1, 0, 2, False),
            (3, 2, 1, False),
            (0, 1, 0, True),
            (2, 1, 2, True),
            (None, 1, 0, True),
            (None, 0, 1, True),
        ]
        for rewritten, appended, n_events, titled in shapes:
            before = await rows()
            base = len(s.messages)
            keep = base - (1 if rewritten is None else rewritten)
            for i in range(keep, base):
                s.messages[i] = {**s.messages[i], "content": f"{s.messages[i]['content']}+"}
            s.messages.extend(
                {"role": "assistant", "content": str(base + i)} for i in range(appended)
            )
            if titled:
                s.title = f"title {base}"
            events = []
            for _ in range(n_events):
                seq += 1
                events.append(Event(seq, "st", "shapes", "tool.call", {"n": seq}, 1000.0 + seq))
            fields = {"title"} if titled else set()
            delta = None if rewritten is None else SaveDelta.appended(base, fields)
            if delta is not None:
                delta = SaveDelta(base, keep, delta.fields)
            await store.save(s, skip_index=True, events=events, delta=delta)
            after = await rows()
            assert sorted(after) == list(range(len(s.messages)))
            changed = {i for i in after if before.get(i) != after[i]}
            assert changed == set(range(keep, len(s.messages))), (rewritten, appended, n_events)
            loaded = await store.load("shapes")
            assert loaded.messages == s.messages
            assert loaded.title == s.title
            assert [e.seq for e in await store.load_events("shapes", "st")] == list(
                range(1, seq + 1)
            )


async def test_a_checkpoint_naming_no_field_lists_a_session_its_messages_make_visible(
    dsn: str, schemas: list[str]
) -> None:
    """An "Untitled" session without messages or a stream is not listed; a checkpoint
    that names no field but appends its first message lists it (the listing's
    ``visible`` column follows the message count without the other fields)."""
    async with _store(dsn, schemas) as store:
        s = store.new_session()
        await store.save(s)
        assert (await store.list_sessions()).sessions == []
        s.messages.append({"role": "user", "content": "hi"})
        await store.save(s, skip_index=True, delta=SaveDelta.appended(0))
        listed = (await store.list_sessions()).sessions
        assert [x.session_id for x in listed] == [s.session_id]


async def test_listing_uses_the_index(dsn: str, schemas: list[str]) -> None:
    async with _store(dsn, schemas) as store:
        for i in range(300):
            await store.save(Session(f"s{i}", title=f"t{i}"))
    con = await asyncpg.connect(dsn, server_settings={"search_path": schemas[-1]})
    try:
        await con.execute("ANALYZE sessions")
        await con.execute("SET enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in await con.fetch(
                "EXPLAIN SELECT session_id FROM sessions WHERE visible AND updated_at < 1e12"
                " ORDER BY updated_at DESC, session_id LIMIT 50"
            )
        )
    finally:
        await con.close()
    assert "sessions_listing" in plan


async def test_metadata_only_load_never_reads_messages(dsn: str, schemas: list[str]) -> None:
    """With the messages table locked against reads, a metadata-only load and the
    listing still answer: they never touch it."""
    async with _store(dsn, schemas) as store:
        await store.save(Session("meta", title="m", messages=[{"role": "user", "content": "x"}]))
        con = await asyncpg.connect(dsn, server_settings={"search_path": schemas[-1]})
        try:
            tx = con.transaction()
            await tx.start()
            await con.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
            meta = await store.load_metadata("meta")
            page = await store.list_sessions()
            await tx.rollback()
        finally:
            await con.close()
    assert meta.metadata_only and meta.message_count == 1
    assert [s.session_id for s in page.sessions] == ["meta"]


async def test_unreachable_server_is_a_store_error_naming_the_cause() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/x", retry_budget=0.3)
    with pytest.raises(StoreError) as info:
        await store.open()
    assert "Connect" in str(info.value) or "connect" in str(info.value).lower()
    assert isinstance(info.value.__cause__, OSError | asyncpg.PostgresError)


async def test_sql_errors_are_store_errors_from_the_driver(dsn: str, schemas: list[str]) -> None:
    async with _store(dsn, schemas) as store:
        await store.save(Session("ok"))
        await _sql(dsn, schemas[-1], "ALTER TABLE sessions RENAME TO gone")
        with pytest.raises(StoreError) as info:
            await store.load("ok")
    assert isinstance(info.value.__cause__, asyncpg.PostgresError)
    assert "gone" not in str(info.value) and "sessions" in str(info.value)


async def test_lost_connections_are_retried(dsn: str, schemas: list[str]) -> None:
    """Every server process of the store's pool is terminated (as a server restart or
    a failover does); the next calls reconnect within the retry budget."""
    async with _store(dsn, schemas, min_size=2, max_size=2) as store:
        await store.save(Session("r", messages=[{"role": "user", "content": "before"}]))
        await _sql(
            dsn,
            "public",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            f"runtime:{schemas[-1]}",
        )
        loaded = await store.load("r")
        loaded.messages.append({"role": "assistant", "content": "after"})
        await store.save(loaded)
        assert [m["content"] for m in (await store.load("r")).messages] == ["before", "after"]


async def test_event_retention_prunes_old_events(dsn: str, schemas: list[str]) -> None:
    async with _store(dsn, schemas, event_retention=3600.0) as store:
        now = time.time()
        s = Session("ev", messages=[{"role": "user", "content": "q"}])
        old = Event(1, "old-stream", "ev", "token", {"text": "a"}, now - 7200)
        new = Event(1, "new-stream", "ev", "token", {"text": "b"}, now)
        await store.save(s, events=[old, new])
        assert await store.prune_events() == 1
        assert await store.load_events("ev", "old-stream") == []
        assert await store.load_events("ev", "new-stream") == [new]


async def test_bad_schema_name_is_refused(dsn: str) -> None:
    with pytest.raises(ValueError, match="schema"):
        PostgresStore(dsn, schema="x; DROP TABLE y")


async def test_event_rows_written_one_per_event_still_load(dsn: str, schemas: list[str]) -> None:
    """Rows written before a run of tokens became one row (one event per row, the
    event's JSON as ``body``) load as the same events from every ``after_seq``; later
    saves add run rows after them."""
    async with _store(dsn, schemas) as store:
        s = Session("old", messages=[{"role": "user", "content": "q"}], active_stream_id="st")
        await store.save(s)
        old = [Event(1, "st", "old", "stream.started", {"user_message": "q"}, 1000.0)]
        old += [
            Event(seq, "st", "old", "token", {"text": f"t{seq}"}, 1000.0 + seq)
            for seq in range(2, 7)
        ]
        con = await asyncpg.connect(dsn, server_settings={"search_path": schemas[-1]})
        try:
            await con.executemany(
                "INSERT INTO events (session_id, stream_id, seq, ts, body)"
                " VALUES ($1, $2, $3, $4, $5)",
                [("old", e.stream_id, e.seq, e.ts, e.json().decode()) for e in old],
            )
        finally:
            await con.close()
        for after in range(len(old) + 1):
            assert await store.load_events("old", "st", after) == old[after:]
        new = [
            Event(seq, "st", "old", "token", {"text": f"t{seq}"}, 1000.0 + seq)
            for seq in range(5, 10)
        ]
        await store.save(s, skip_index=True, events=new)  # overlaps the old rows 5 and 6
        # the run 5..9 replaces the row of event 5 (it holds more); the old row of event 6
        # stays, and the reader keeps each seq once
        rows = await _sql(dsn, schemas[-1], "SELECT seq, body FROM events ORDER BY seq")
        assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6]
        assert orjson.loads(rows[4][1])["texts"] == ["t5", "t6", "t7", "t8", "t9"]
        for after in range(10):
            assert await store.load_events("old", "st", after) == (old + new[2:])[after:]


async def test_released_connections_carry_no_session_state(dsn: str, schemas: list[str]) -> None:
    """The pool hands a released connection to the next operation as it is (no reset
    round trip), so no operation may leave session state on it: after saves, a lease
    claim, checkpoints, a fenced save that fails, the ledger, documents, ``recover()``
    (a transaction-scoped advisory lock) and a delete, all on the pool's one
    connection, that backend is idle outside any transaction and holds no lock."""
    async with _store(dsn, schemas, min_size=1, max_size=1) as store:
        s = Session("state", messages=[{"role": "user", "content": "hi"}])
        await store.save(s)
        lease = Lease("node-a", "token-a", 30.0)
        s.active_stream_id = "st1"
        await store.save(s, lease=lease, lease_mode="claim")
        for i in range(3):
            base = len(s.messages)
            s.messages.append({"role": "assistant", "content": str(i)})
            await store.save(s, skip_index=True, lease=lease, delta=SaveDelta.appended(base))
        with pytest.raises(LeaseLost):
            await store.save(s, lease=Lease("node-b", "token-b", 30.0), lease_mode="renew")
        await store.record_tool_call("state", "st1", "c1", "search", {"q": "x"}, lease=lease)
        await store.write_document("routes", b"{}", expected_version=None)
        s.active_stream_id = None
        await store.save(s, lease=lease, lease_mode="release")
        await store.recover()
        await store.delete("state")
        rows = await _sql(
            dsn,
            schemas[-1],
            "SELECT a.pid, a.state, a.backend_xid,"
            " (SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid) AS locks"
            " FROM pg_stat_activity a WHERE a.application_name = $1",
            f"runtime:{schemas[-1]}",
        )
        assert len(rows) == 1, rows  # the pool's one connection served every operation
        assert (rows[0]["state"], rows[0]["backend_xid"], rows[0]["locks"]) == ("idle", None, 0)
        assert not await store.exists("state")  # and it still serves the next one


async def test_delete_removes_the_message_rows(dsn: str, schemas: list[str]) -> None:
    """No foreign key cascades from ``sessions`` to ``messages`` (it cost every
    checkpoint a trigger): the delete itself removes the rows, and the id can be
    saved again from scratch."""
    async with _store(dsn, schemas) as store:
        s = Session("gone", messages=[{"role": "user", "content": str(i)} for i in range(5)])
        await store.save(s)
        await store.delete("gone")
        rows = await _sql(dsn, schemas[-1], "SELECT count(*) FROM messages")
        assert rows[0][0] == 0
        again = Session("gone", messages=[{"role": "user", "content": "new"}])
        await store.save(again)
        assert [m["content"] for m in (await store.load("gone")).messages] == ["new"]
        fks = await _sql(
            dsn,
            schemas[-1],
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'messages'::regclass"
            " AND contype = 'f'",
        )
        assert fks[0][0] == 0


async def test_load_reads_the_history_in_index_order(dsn: str, schemas: list[str]) -> None:
    """A full load reads the metadata row and the messages in one statement that never
    sorts the history on the server. Checked on a server that may not write a temporary
    file (``temp_file_limit=0``) with a small ``work_mem``: a sort of this history
    would have to spill, and fail."""
    sep = "&" if "?" in dsn else "?"
    tight = f"{dsn}{sep}work_mem=64&temp_file_limit=0"
    messages = [{"role": "tool", "tool_call_id": str(i), "content": "x" * 400} for i in range(3000)]
    async with _store(dsn, schemas) as store:
        await store.save(Session("big", messages=messages))
    await _sql(dsn, schemas[-1], "ANALYZE messages")
    async with PostgresStore(tight, schema=schemas[-1]) as store:
        for _ in range(7):  # past the prepared statement's switch to a generic plan
            loaded = await store.load("big")
            assert loaded.messages == messages


async def test_load_orders_messages_stored_out_of_heap_order(dsn: str, schemas: list[str]) -> None:
    """The server returns the message rows in whatever order its plan reads them (here
    in heap order, where a later message sits in space a deleted session freed before
    the earlier ones); the load still gives them in message order."""
    body = "x" * 1500  # ~5 rows a page, below the TOAST threshold
    async with _store(dsn, schemas) as store:
        await store.save(
            Session("gone", messages=[{"role": "user", "content": body} for _ in range(40)])
        )
        first = [{"role": "user", "content": f"{i} {body}"} for i in range(20)]
        await store.save(Session("kept", messages=first))
        await store.delete("gone")
        await _sql(dsn, schemas[-1], "VACUUM messages")
        s = await store.load("kept")
        s.messages.extend({"role": "user", "content": f"{i} {body}"} for i in range(20, 40))
        await store.save(s, delta=SaveDelta.appended(20))
        heap = await _sql(
            dsn,
            schemas[-1],
            "SELECT idx FROM messages WHERE session_id = 'kept' ORDER BY ctid",
        )
        assert [r[0] for r in heap] != sorted(r[0] for r in heap)  # the setup's premise
        # the session is the whole table: the planner reads it by a scan of the heap
        await _sql(dsn, schemas[-1], "ANALYZE messages")
        for _ in range(7):  # past the prepared statement's switch to a generic plan
            loaded = await store.load("kept")
            assert [m["content"].split()[0] for m in loaded.messages] == [str(i) for i in range(40)]


async def test_checkpoints_leave_the_list_index_alone(dsn: str, schemas: list[str]) -> None:
    """A checkpoint (``skip_index=True``) records its ``updated_at`` where no index
    looks: a load sees it, the listing keeps the order of the last indexed save, and
    the row update is HOT (the server counts it; no new index entries)."""
    async with _store(dsn, schemas) as store:
        a = Session("a", title="a", messages=[{"role": "user", "content": "hi"}])
        await store.save(a)
        await store.save(Session("b", title="b", messages=[{"role": "user", "content": "hi"}]))
        listed = (await store.list_sessions()).sessions
        assert [s.session_id for s in listed] == ["b", "a"]
        for i in range(20):
            base = len(a.messages)
            a.messages.append({"role": "assistant", "content": str(i)})
            await store.save(a, skip_index=True, delta=SaveDelta.appended(base))
        assert (await store.load("a")).updated_at == a.updated_at
        assert (await store.load_metadata("a")).updated_at == a.updated_at
        assert [s.session_id for s in (await store.list_sessions()).sessions] == ["b", "a"]
        await store.save(a)  # a full save updates the list index
        listed = (await store.list_sessions()).sessions
        assert [s.session_id for s in listed] == ["a", "b"]
        assert listed[0].updated_at == a.updated_at
    # the store's backends flush their statistics as they exit (after the close)
    for _ in range(100):
        hot = await _sql(
            dsn,
            schemas[-1],
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
            " WHERE schemaname = $1 AND relname = 'sessions'",
            schemas[-1],
        )
        if hot[0]["n_tup_upd"] >= 23:  # 20 checkpoints, three saves
            break
        await anyio.sleep(0.1)
    assert hot[0]["n_tup_hot_upd"] >= 20, hot


async def test_checkpoints_survive_losing_their_kept_connection(
    dsn: str, schemas: list[str]
) -> None:
    """Checkpoints run on a connection the store keeps out of the pool while it is free,
    on pooled ones when several run at once; a terminated server process under it is
    a lost connection like any other: the next checkpoint reconnects."""
    async with _store(dsn, schemas, min_size=1, max_size=3) as store:
        sessions = [Session(f"k{i}", messages=[{"role": "user", "content": "0"}]) for i in range(3)]
        for s in sessions:
            await store.save(s)

        async def checkpoint(s: Session, text: str) -> None:
            base = len(s.messages)
            s.messages.append({"role": "assistant", "content": text})
            await store.save(s, skip_index=True, delta=SaveDelta.appended(base))

        for round_ in range(1, 4):
            async with anyio.create_task_group() as tg:  # three at once: one kept, two pooled
                for s in sessions:
                    tg.start_soon(checkpoint, s, str(round_))
            await _sql(
                dsn,
                "public",
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = $1",
                f"runtime:{schemas[-1]}",
            )
        for s in sessions:
            await checkpoint(s, "after")
            stored = [m["content"] for m in (await store.load(s.session_id)).messages]
            assert stored == ["0", "1", "2", "3", "after"]


async def _row_version(dsn: str, schema: str, session_id: str) -> str:
    rows = await _sql(
        dsn, schema, "SELECT xmin::text FROM sessions WHERE session_id = $1", session_id
    )
    return str(rows[0][0])


@contextlib.asynccontextmanager
async def _other_transaction(dsn: str, schema: str) -> AsyncIterator[Any]:
    """A transaction open on a connection of its own (another process's, in effect);
    yields the connection and the transaction, which the caller commits."""
    con = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        tx = con.transaction()
        await tx.start()
        yield con, tx
    finally:
        await con.close()


async def _wait_for_lock_wait(dsn: str, schema: str) -> None:
    """Until a backend of the store (its application_name) waits on a row lock."""
    for _ in range(500):
        waiting = await _sql(
            dsn,
            "public",
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = $1 AND wait_event_type = 'Lock'",
            f"runtime:{schema}",
        )
        if waiting[0][0]:
            return
        await anyio.sleep(0.01)
    raise AssertionError("the store's statement never waited on the row lock")


async def test_leased_append_checkpoints_leave_the_session_row_alone(
    dsn: str, schemas: list[str]
) -> None:
    """A running turn's checkpoints that only append (or rewrite the last message) and
    carry events leave the session's row as it is (one row version: no update, no
    HOT chain); a full load still sees every message and the last checkpoint's
    ``updated_at``. The row's count and ``updated_at`` (what a metadata-only load and
    the listing read) catch up at the turn's final save; an idle renewal keeps the
    fast path."""
    async with _store(dsn, schemas) as store:
        s = Session("turn", title="t", messages=[{"role": "user", "content": "q"}])
        await store.save(s)
        lease = Lease("node-a", "a" * 32, 60.0)
        s.active_stream_id = "st"
        await store.save(s, lease=lease, lease_mode="claim")
        claimed = await _row_version(dsn, schemas[-1], "turn")
        for i in range(5):
            base = len(s.messages)
            s.messages.append({"role": "assistant", "content": f"part {i}"})
            event = Event(i + 1, "st", "turn", "tool.call", {"n": i}, 1000.0 + i)
            await store.save(
                s, skip_index=True, events=[event], lease=lease, delta=SaveDelta.appended(base)
            )
        s.messages[-1] = {"role": "assistant", "content": "part 4, grown"}
        await store.save(s, skip_index=True, lease=lease, delta=SaveDelta(6, 5))
        await store.renew_lease("turn", lease)  # the runner's renewal of an idle turn
        renewed = await _row_version(dsn, schemas[-1], "turn")
        assert renewed != claimed
        s.messages.append({"role": "assistant", "content": "after the renewal"})
        await store.save(s, skip_index=True, lease=lease, delta=SaveDelta.appended(6))
        assert await _row_version(dsn, schemas[-1], "turn") == renewed
        loaded = await store.load("turn")
        assert loaded.messages == s.messages
        assert loaded.updated_at == s.updated_at
        assert [e.seq for e in await store.load_events("turn", "st")] == [1, 2, 3, 4, 5]
        # the row still holds the claim's count: documented, until the final save
        assert (await store.load_metadata("turn")).message_count == 1
        s.active_stream_id = None
        await store.save(s, lease=lease, lease_mode="release")
        meta = await store.load_metadata("turn")
        assert (meta.message_count, meta.updated_at) == (7, s.updated_at)
        assert (await store.load("turn")).messages == s.messages


async def test_a_stale_checkpoint_racing_a_claim_writes_nothing(
    dsn: str, schemas: list[str]
) -> None:
    """A checkpoint whose row lock waits for another process's claim (the claim holds
    the row ``FOR UPDATE`` and moves the lease) re-checks the row that claim
    committed: it raises ``LeaseLost`` and writes no message."""
    async with _store(dsn, schemas) as store:
        s = Session("race", messages=[{"role": "user", "content": "q"}])
        lease = Lease("node-a", "a" * 32, 60.0)
        await store.save(s, lease=lease, lease_mode="claim")
        s.messages.append({"role": "assistant", "content": "1"})
        await store.save(s, skip_index=True, lease=lease, delta=SaveDelta.appended(1))
        async with _other_transaction(dsn, schemas[-1]) as (claimer, tx):
            await claimer.execute("SELECT 1 FROM sessions WHERE session_id = 'race' FOR UPDATE")
            await claimer.execute(
                "UPDATE sessions SET lease_owner = 'node-b', lease_token = $1"
                " WHERE session_id = 'race'",
                "b" * 32,
            )
            s.messages.append({"role": "assistant", "content": "2, from the stale holder"})
            async with anyio.create_task_group() as tg:
                outcome: list[BaseException] = []

                async def checkpoint() -> None:
                    try:
                        await store.save(
                            s, skip_index=True, lease=lease, delta=SaveDelta.appended(2)
                        )
                    except LeaseLost as exc:
                        outcome.append(exc)

                tg.start_soon(checkpoint)
                await _wait_for_lock_wait(dsn, schemas[-1])
                await tx.commit()
        assert len(outcome) == 1 and isinstance(outcome[0], LeaseLost)
        idx = await _sql(dsn, schemas[-1], "SELECT idx FROM messages ORDER BY idx")
        assert [r[0] for r in idx] == [0, 1]


async def test_a_save_waiting_for_a_locked_append_counts_its_rows(
    dsn: str, schemas: list[str]
) -> None:
    """A locked append in flight holds the row ``FOR SHARE``; a transactional save
    (here a full save with a delta, from another store) waits for it and then counts
    the rows it committed (a later statement's snapshot), so it sees the right stored
    count: no ``WriteConflict``, and no row lost or overwritten."""
    async with _store(dsn, schemas) as store, PostgresStore(dsn, schema=schemas[-1]) as other:
        s = Session("count", messages=[{"role": "user", "content": "q"}])
        await store.save(s)
        async with _other_transaction(dsn, schemas[-1]) as (appender, tx):
            await appender.execute("SELECT 1 FROM sessions WHERE session_id = 'count' FOR SHARE")
            await appender.execute(
                "INSERT INTO messages (session_id, idx, body) VALUES ('count', 1, $1)",
                orjson.dumps({"role": "assistant", "content": "appended"}).decode(),
            )
            s.messages.append({"role": "assistant", "content": "appended"})
            s.messages.append({"role": "user", "content": "next"})
            s.title = "saved after the append"
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: other.save(s, delta=SaveDelta.appended(2, ["title"])))
                await _wait_for_lock_wait(dsn, schemas[-1])
                await tx.commit()
        loaded = await store.load("count")
        assert loaded.messages == s.messages and loaded.title == s.title
        assert (await store.load_metadata("count")).message_count == 3


async def test_a_checkpoint_extends_the_lease_once_a_third_of_its_ttl_passed(
    dsn: str, schemas: list[str]
) -> None:
    """Checkpoints leave the lease's expiry alone while less than a third of its ttl
    passed since the store last extended it; the first one after extends it by the
    ttl again (the row path)."""
    async with _store(dsn, schemas) as store:
        s = Session("renew", messages=[{"role": "user", "content": "q"}])
        lease = Lease("node-a", "a" * 32, 6.0)
        await store.save(s, lease=lease, lease_mode="claim")
        claimed = await _row_version(dsn, schemas[-1], "renew")
        s.messages.append({"role": "assistant", "content": "1"})
        await store.save(s, skip_index=True, lease=lease, delta=SaveDelta.appended(1))
        assert await _row_version(dsn, schemas[-1], "renew") == claimed
        await anyio.sleep(lease.ttl / 3 + 0.1)
        state = await store.lease_state("renew")
        assert state is not None
        before = state.expires_in
        s.messages.append({"role": "assistant", "content": "2"})
        await store.save(s, skip_index=True, lease=lease, delta=SaveDelta.appended(2))
        assert await _row_version(dsn, schemas[-1], "renew") != claimed
        state = await store.lease_state("renew")
        assert state is not None and state.expires_in > before
        assert (await store.load("renew")).messages == s.messages


# -- the bound on a statement (command_timeout): the server cancels a statement past it
# (statement_timeout), and the store's watchdog closes the connection of a statement that
# got no answer at all (a TCP proxy in a subprocess, stopped with SIGSTOP, stands for a
# dead network path)


def _messages(*texts: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": t} for t in texts]


@asynccontextmanager
async def _row_locked(dsn: str, schema: str, sid: str) -> AsyncIterator[asyncpg.Transaction]:
    """Another connection holds the session's row ``FOR UPDATE`` until the block ends or
    the transaction it yields is rolled back."""
    con = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        tx = con.transaction()
        await tx.start()
        await con.execute("SELECT 1 FROM sessions WHERE session_id = $1 FOR UPDATE", sid)
        yield tx
    finally:
        await con.close()


def test_bad_command_timeouts_are_refused(dsn: str) -> None:
    for bad in (0, -1.0, float("inf"), float("nan"), "60", True):
        with pytest.raises(ValueError, match=r"command_timeout .*positive number"):
            PostgresStore(dsn, command_timeout=bad)  # type: ignore[arg-type]
    assert PostgresStore(dsn, command_timeout=None).command_timeout is None


async def test_a_statement_past_the_bound_is_cancelled_by_the_server(
    dsn: str, schemas: list[str]
) -> None:
    """Another connection holds the session's row ``FOR UPDATE``: the running turn's
    checkpoint (``FOR SHARE``) waits for it past ``command_timeout``, the server
    cancels it (``statement_timeout`` counts lock waits), the save raises StoreError
    (not retried: the statement ran), nothing was written, and once the lock goes the
    same checkpoint goes through on the same store."""
    async with _store(dsn, schemas, command_timeout=0.5, max_size=2) as store:
        s = Session("slow", messages=_messages("q"))
        await store.save(s)
        lease = Lease("node", "token-1", 30.0)
        await store.save(s, lease=lease, lease_mode="claim")
        async with _row_locked(dsn, store.schema, "slow"):
            s.messages.append({"role": "assistant", "content": "a"})
            with anyio.fail_after(30), pytest.raises(StoreError) as info:
                await store.save(s, skip_index=True, delta=SaveDelta.appended(1), lease=lease)
            assert isinstance(info.value.__cause__, asyncpg.QueryCanceledError)
            assert "statement timeout" in str(info.value.__cause__)
        assert [m["content"] for m in (await store.load("slow")).messages] == ["q"]
        await store.save(s, skip_index=True, delta=SaveDelta.appended(1), lease=lease)
        assert [m["content"] for m in (await store.load("slow")).messages] == ["q", "a"]


@pytest.mark.parametrize("max_size", [1, 2])
async def test_a_cancelled_checkpoint_ends_on_the_server_before_its_caller_goes_on(
    dsn: str, schemas: list[str], max_size: int
) -> None:
    """A running turn's checkpoint waits for the session's row (another connection holds
    it ``FOR UPDATE``) and its caller is cancelled: the call returns while the lock is
    still held, by then no statement of the store runs or waits on the server (the
    cancel request ended it there), and after the lock goes nothing of it lands; the
    store's next checkpoint of the same messages goes through. (With the checkpoint
    shielded from cancellation, the call would instead wait for the lock until the
    server's ``statement_timeout`` and raise StoreError.) ``max_size`` 2: on the
    connection the store keeps for checkpoints; 1: on a pooled one."""
    async with _store(dsn, schemas, command_timeout=5.0, max_size=max_size) as store:
        s = Session("cancelled", messages=_messages("q"))
        await store.save(s)
        lease = Lease("node", "token-1", 30.0)
        await store.save(s, lease=lease, lease_mode="claim")
        s.messages.append({"role": "assistant", "content": "a0"})
        await store.save(s, skip_index=True, delta=SaveDelta.appended(1), lease=lease)
        async with _row_locked(dsn, store.schema, "cancelled"):
            s.messages.append({"role": "assistant", "content": "a1"})
            with anyio.move_on_after(0.5) as waited:
                await store.save(s, skip_index=True, delta=SaveDelta.appended(2), lease=lease)
            assert waited.cancelled_caught
            running = await _sql(
                dsn,
                store.schema,
                "SELECT state, wait_event_type, query FROM pg_stat_activity"
                " WHERE application_name = $1 AND state <> 'idle'",
                f"runtime:{store.schema}",
            )
            assert running == []
        assert [m["content"] for m in (await store.load("cancelled")).messages] == ["q", "a0"]
        await store.save(s, skip_index=True, delta=SaveDelta.appended(2), lease=lease)
        assert [m["content"] for m in (await store.load("cancelled")).messages] == [
            "q",
            "a0",
            "a1",
        ]


@pytest.mark.parametrize("bound", [None, 2.0])
async def test_a_statement_in_bound_waits_for_the_lock(
    dsn: str, schemas: list[str], bound: float | None
) -> None:
    """A save waiting for a row lock longer than the bound of the test above but within
    its own (``None``: no ``statement_timeout``, no watchdog; 2 s: the server's bound
    applies, the watchdog waits for twice it, across rounds of it) is left alone and
    writes once the lock goes."""
    async with _store(dsn, schemas, command_timeout=bound) as store:
        await store.save(Session("wait", messages=_messages("q")))
        async with (
            _row_locked(dsn, store.schema, "wait") as tx,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(store.save, Session("wait", messages=_messages("q", "r")))
            await anyio.sleep(1.0)
            waiting = await _sql(
                dsn,
                "public",
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = $1 AND wait_event_type = 'Lock'",
                f"runtime:{store.schema}",
            )
            assert waiting[0][0] == 1
            await tx.rollback()
        assert [m["content"] for m in (await store.load("wait")).messages] == ["q", "r"]


_PROXY = """
import asyncio, sys
host, port = sys.argv[1], int(sys.argv[2])
async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()
async def serve(reader, writer):
    up_reader, up_writer = await asyncio.open_connection(host, port)
    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


@contextmanager
def _proxy(dsn: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A TCP proxy to the server of ``dsn`` in a subprocess: the DSN through it, and
    the process (stop it to make every connection through it stop answering)."""
    parts = urlsplit(dsn)
    if parts.hostname is None or parts.hostname.startswith("/"):
        pytest.fail(f"the test server's DSN names no TCP host: {dsn!r}")
    proc = subprocess.Popen(
        [sys.executable, "-c", _PROXY, parts.hostname, str(parts.port or 5432)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{port}"
        proxied = urlunsplit(
            parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host)
        )
        yield proxied, proc
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()


async def test_the_watchdog_closes_a_connection_that_stopped_answering(
    dsn: str, schemas: list[str]
) -> None:
    """The store reaches the server through a proxy that is then stopped (SIGSTOP): a
    statement sent gets no answer, not even the server's statement timeout. The
    watchdog closes its connection after ``2 * command_timeout``; with no retry budget
    that is a StoreError naming the watchdog. Once the proxy runs again the store
    works: the pool opened a new connection."""
    with _proxy(dsn) as (proxied, proc):
        async with _store(
            proxied, schemas, command_timeout=0.5, retry_budget=0.0, max_size=2
        ) as store:
            await store.save(Session("w", messages=_messages("q")))
            assert [m["content"] for m in (await store.load("w")).messages] == ["q"]
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                with anyio.fail_after(30), pytest.raises(StoreError) as info:
                    await store.load("w")
                waited = time.monotonic() - started
            finally:
                os.kill(proc.pid, signal.SIGCONT)
            assert waited >= 1.0  # never before 2 * command_timeout
            assert any("watchdog" in note for note in info.value.__notes__)
            assert isinstance(info.value.__cause__, asyncpg.ConnectionDoesNotExistError)
            s = await store.load("w")
            s.messages.append({"role": "assistant", "content": "a"})
            await store.save(s)
            assert [m["content"] for m in (await store.load("w")).messages] == ["q", "a"]
