"""Following from node B a stream node A runs, when B's event log does not have it yet
or it goes quiet. Behind a load balancer a browser's ``GET`` of the stream can land on
B the moment A answered the ``POST`` that started the turn, before A's sender has
written the stream's keys: it must be followed, not ended. And the subscribers of a
quiet stream on B must not each ask the store whether A died. Real PostgreSQL
(``RUNTIME_TEST_POSTGRES_DSN``) and Redis (``RUNTIME_TEST_REDIS_URL``, or a private
``redis-server`` whose writes are held with ``CLIENT PAUSE ... WRITE``, reads going on,
to make "not yet in Redis" last). Skips without the servers, fails under ``CI=true``."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import redis.asyncio as aioredis
from brokers.test_redis import collect, counting_agent, two_nodes
from postgres_server import dropped_after, new_schema, postgres_dsn
from redis_server import new_prefix, private_redis, redis_url

from runtime import Event, EventLogUnavailable, Runtime, Session
from runtime.brokers.redis import RedisEventLog
from runtime.stores.postgres import PostgresStore


def assert_whole_turn(events: list[Event], tokens: int) -> None:
    """Every seq once, every token of ``counting_agent``'s turn, its real end."""
    seqs = [e.seq for e in events]
    assert seqs == list(range(1, seqs[-1] + 1))
    assert [e.type for e in events[-2:]] == ["done", "stream.end"], events[-3:]
    assert not [e for e in events if e.type == "error"]
    text = "".join(e.data["text"] for e in events if e.type == "token")
    assert text == "".join(f"w{i:03d} " for i in range(1, tokens + 1))


async def test_b_follows_a_stream_whose_keys_are_not_in_redis_yet(tmp_path: Path) -> None:
    """A's writes to Redis held from before the turn starts: B follows the turn from
    the store, then from Redis once A's sender gets through (before: ``interrupted``
    and ``stream.end`` at once, for a turn that was running)."""
    with private_redis(tmp_path) as server:
        async with two_nodes(server.url) as (a, b):
            session = await a.create_session()
            admin = aioredis.Redis.from_url(server.url)
            try:
                await admin.execute_command("CLIENT", "PAUSE", "1500", "WRITE")
                stream_id = await a.start_turn(session.session_id, "tokens=30 delay=0.01")
                with anyio.fail_after(30):
                    events = await collect(b, stream_id)
            finally:
                await admin.execute_command("CLIENT", "UNPAUSE")
                await admin.aclose()
            assert_whole_turn(events, 30)
            on_a = await collect(a, stream_id)
            assert [e.to_dict() for e in on_a] == [e.to_dict() for e in events]


async def test_b_follows_a_running_stream_while_redis_comes_back_empty(tmp_path: Path) -> None:
    """Redis restarted with nothing in it while A's turn runs (A's writes then held for
    a while): a subscriber that comes to B, which had no view of the stream, before A
    has written the stream again follows it from the store, then from Redis, to its
    real end (before: an ``interrupted`` ending for a turn that was running). A read
    that meets a pooled connection the restart closed gets ``EventLogUnavailable`` and
    resumes, as an SSE client reconnects with ``Last-Event-ID``."""
    with private_redis(tmp_path) as server:
        async with two_nodes(server.url) as (a, b):
            session = await a.create_session()
            stream_id = await a.start_turn(session.session_id, "tokens=150 delay=0.01")
            events = await collect(a, stream_id, 0, stop=20)  # B has no view of it yet
            server.stop()
            server.start()  # empty: the stream's keys are gone until A's sender is back
            admin = aioredis.Redis.from_url(server.url)
            try:
                await admin.execute_command("CLIENT", "PAUSE", "1000", "WRITE")
                with anyio.fail_after(30):
                    while events[-1].type != "stream.end":
                        try:
                            async for event in b.events(stream_id, events[-1].seq):
                                events.append(event)
                        except EventLogUnavailable:
                            await anyio.sleep(0.05)
            finally:
                await admin.aclose()
            assert_whole_turn(events, 150)


class CountingStore(PostgresStore):
    """A PostgresStore that counts its metadata reads."""

    metadata_loads = 0

    async def load_metadata(self, session_id: str) -> Session:
        self.metadata_loads += 1
        return await super().load_metadata(session_id)


async def test_subscribers_of_a_quiet_stream_on_b_share_its_checks() -> None:
    """100 subscribers on B of a stream that goes quiet on A (a 3 s pause, B's
    ``liveness`` 0.5 s): each quiet spell makes B ask the store whether the stream's
    owner died. They ask once for all of them, not once each (that was two metadata
    reads per subscriber every ``liveness`` seconds), and still follow the stream to
    its end."""
    dsn, schema, prefix, url = postgres_dsn(), new_schema(), new_prefix(), redis_url()
    async with dropped_after(dsn, [schema]), AsyncExitStack() as stack:
        stores = [CountingStore(dsn, schema=schema) for _ in "ab"]
        a, b = [
            await stack.enter_async_context(
                Runtime(
                    store,
                    counting_agent,
                    broker=RedisEventLog(url, prefix=prefix),
                    node_id=f"node-{name}-{prefix}",
                    lease_ttl=1.5,
                    checkpoint_interval=0.1,
                    recover_on_start=False,
                )
            )
            for store, name in zip(stores, "ab", strict=True)
        ]
        session = await a.create_session()
        stream_id = await a.start_turn(session.session_id, "tokens=2 delay=3")
        before = stores[1].metadata_loads
        with anyio.fail_after(30):
            results = await asyncio.gather(*(collect(b, stream_id) for _ in range(100)))
        assert all(r[-1].type == "stream.end" and r[-2].type == "done" for r in results)
        assert all([e.to_dict() for e in r] == [e.to_dict() for e in results[0]] for r in results)
        loads = stores[1].metadata_loads - before
        assert 0 < loads < 100, loads  # the quiet spells were checked, once for all


async def test_a_cancel_from_b_reaches_a_whose_listener_is_reconnecting(tmp_path: Path) -> None:
    """B's cancel request while A's listener for them is away (Redis dropped its pub/sub
    connection; A reconnects after a back-off): before, nobody received the request and
    the Stop button did nothing (``cancel`` returned ``False`` for a running turn). B
    asks again until A hears it, and the turn ends cancelled, as a local cancel ends
    it."""
    with private_redis(tmp_path) as server:
        async with two_nodes(server.url) as (a, b):
            session = await a.create_session()
            stream_id = await a.start_turn(session.session_id, "tokens=100000 delay=0.01")
            await collect(b, stream_id, 0, stop=10)
            admin = aioredis.Redis.from_url(server.url)
            try:
                assert await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
                with anyio.fail_after(30):
                    assert await b.cancel(stream_id) is True
            finally:
                await admin.aclose()
            events = await collect(a, stream_id)
            assert [e.type for e in events[-2:]] == ["cancelled", "stream.end"]
            assert events[-1].data == {"outcome": "cancelled"}
            assert (await b.session_status(session.session_id))["active_stream_id"] is None
