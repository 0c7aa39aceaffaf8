"""PostgresStore's bound on a statement (``command_timeout``) on a real PostgreSQL
server (``RUNTIME_TEST_POSTGRES_DSN``): the server cancels a statement past the bound
(``statement_timeout``), and the store's watchdog closes the connection of a statement
that got no answer at all (a TCP proxy in a subprocess, stopped with SIGSTOP, stands
for a dead network path)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import pytest
from postgres_server import dropped_after, new_schema, postgres_dsn

from runtime import SaveDelta, Session, StoreError
from runtime.stores.abc import Lease
from runtime.stores.postgres import PostgresStore


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


def _messages(*texts: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": t} for t in texts]


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
        con = await asyncpg.connect(dsn, server_settings={"search_path": store.schema})
        try:
            tx = con.transaction()
            await tx.start()
            await con.execute("SELECT 1 FROM sessions WHERE session_id = 'slow' FOR UPDATE")
            s.messages.append({"role": "assistant", "content": "a"})
            with anyio.fail_after(30), pytest.raises(StoreError) as info:
                await store.save(s, skip_index=True, delta=SaveDelta.appended(1), lease=lease)
            assert isinstance(info.value.__cause__, asyncpg.QueryCanceledError)
            assert "statement timeout" in str(info.value.__cause__)
            await tx.rollback()
        finally:
            await con.close()
        assert [m["content"] for m in (await store.load("slow")).messages] == ["q"]
        await store.save(s, skip_index=True, delta=SaveDelta.appended(1), lease=lease)
        assert [m["content"] for m in (await store.load("slow")).messages] == ["q", "a"]


async def test_no_bound_waits_for_the_lock(dsn: str, schemas: list[str]) -> None:
    """``command_timeout=None``: no ``statement_timeout``, no watchdog; a save waits
    for a lock held longer than the bound of the test above, then writes."""
    async with _store(dsn, schemas, command_timeout=None) as store:
        await store.save(Session("wait", messages=_messages("q")))
        con = await asyncpg.connect(dsn, server_settings={"search_path": store.schema})
        try:
            tx = con.transaction()
            await tx.start()
            await con.execute("SELECT 1 FROM sessions WHERE session_id = 'wait' FOR UPDATE")
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.save, Session("wait", messages=_messages("q", "r")))
                await anyio.sleep(1.5)
                waiting = await con.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE application_name = $1 AND wait_event_type = 'Lock'",
                    f"runtime:{store.schema}",
                )
                assert waiting == 1
                await tx.rollback()
        finally:
            await con.close()
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


async def test_a_statement_in_bound_is_not_touched(dsn: str, schemas: list[str]) -> None:
    """A statement that runs for most of ``command_timeout`` finishes (the server's
    bound is the one that applies; the watchdog waits for twice it), across several
    rounds of the watchdog."""
    async with _store(dsn, schemas, command_timeout=2.0) as store:
        await store.save(Session("ok", messages=_messages("q")))
        con = await asyncpg.connect(dsn, server_settings={"search_path": store.schema})
        try:
            tx = con.transaction()
            await tx.start()
            await con.execute("SELECT 1 FROM sessions WHERE session_id = 'ok' FOR UPDATE")
            async with anyio.create_task_group() as tg:
                tg.start_soon(store.save, Session("ok", messages=_messages("q", "r")))
                await anyio.sleep(1.0)
                await tx.rollback()
        finally:
            await con.close()
        assert [m["content"] for m in (await store.load("ok")).messages] == ["q", "r"]
