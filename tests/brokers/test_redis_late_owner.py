"""A stream whose owner's first events have not reached Redis yet, seen from another
node: it must be followed, not ended. Behind a load balancer a browser's ``GET`` of the
stream can land on node B the moment node A answered the ``POST`` that started the turn,
before A's sender has written the stream's keys. Real PostgreSQL
(``RUNTIME_TEST_POSTGRES_DSN``) and a private ``redis-server``, whose writes are held
with ``CLIENT PAUSE ... WRITE`` (reads go on) to make "not yet in Redis" last.
Skips without the servers, fails under ``CI=true``."""

from __future__ import annotations

from pathlib import Path

import anyio
import redis.asyncio as aioredis
from brokers.test_redis import collect, two_nodes
from redis_server import private_redis

from runtime import EventLogUnavailable


async def test_b_follows_a_stream_whose_keys_are_not_in_redis_yet(tmp_path: Path) -> None:
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
            seqs = [e.seq for e in events]
            assert seqs == list(range(1, seqs[-1] + 1))
            assert [e.type for e in events[-2:]] == ["done", "stream.end"], events[-3:]
            assert not [e for e in events if e.type == "error"]
            tokens = "".join(e.data["text"] for e in events if e.type == "token")
            assert tokens == "".join(f"w{i:03d} " for i in range(1, 31))
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
            seqs = [e.seq for e in events]
            assert seqs == list(range(1, seqs[-1] + 1))
            assert [e.type for e in events[-2:]] == ["done", "stream.end"], events[-3:]
            assert not [e for e in events if e.type == "error"]
            tokens = "".join(e.data["text"] for e in events if e.type == "token")
            assert tokens == "".join(f"w{i:03d} " for i in range(1, 151))
