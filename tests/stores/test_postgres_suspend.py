"""A rolling deploy on a shared store: node A leaves (a graceful shutdown) while its
turn runs, and node B, with ``resume="auto"``, continues the turn at once, without
waiting out A's lease. Two runtimes on one real PostgreSQL schema
(``RUNTIME_TEST_POSTGRES_DSN``), with no shared event log or with a real Redis one
(``RUNTIME_TEST_REDIS_URL``); a client follows the stream on B throughout. Skips
without the servers, fails under ``CI=true``."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AsyncExitStack

import anyio
from postgres_server import dropped_after, new_schema, postgres_dsn
from redis_server import new_prefix, redis_url

from runtime import Event, Runtime, Turn
from runtime.brokers.abc import Broker
from runtime.stores.postgres import PostgresStore

TOKENS = 80


async def writer(turn: Turn) -> None:
    """``TOKENS`` numbered tokens, 20 ms apart, then the reply they make; a resumed
    attempt writes it again from the start (its dropped draft is streamed again)."""
    for i in range(1, TOKENS + 1):
        await turn.token(f"t{i:02d} ")
        await anyio.sleep(0.02)
    await turn.reply()


async def test_node_b_resumes_the_turn_node_a_suspended_at_once() -> None:
    """No shared event log: B follows A's turn from the store."""
    await _rolling_deploy(lambda: None)


async def test_node_b_resumes_the_turn_node_a_suspended_at_once_over_redis() -> None:
    """A Redis event log: B follows A's turn from Redis, and notices A gone through the
    store once Redis has been quiet for its liveness check (2 s)."""
    from runtime.brokers.redis import RedisEventLog

    url, prefix = redis_url(), new_prefix()
    await _rolling_deploy(lambda: RedisEventLog(url, prefix=prefix))


async def _rolling_deploy(broker: Callable[[], Broker | None]) -> None:
    dsn, schema = postgres_dsn(), new_schema()
    lease_ttl = 30.0  # what a crash would make B wait before it could take the turn over
    async with dropped_after(dsn, [schema]), AsyncExitStack() as b_stack:
        b = await b_stack.enter_async_context(
            Runtime(
                PostgresStore(dsn, schema=schema),
                writer,
                node_id="node-b",
                broker=broker(),
                lease_ttl=lease_ttl,
                resume="auto",
                resume_backoff=0.05,
                checkpoint_interval=0.05,
                recover_on_start=False,
            )
        )
        events: list[Event] = []
        async with Runtime(
            PostgresStore(dsn, schema=schema),
            writer,
            node_id="node-a",
            broker=broker(),
            lease_ttl=lease_ttl,
            checkpoint_interval=0.05,
            recover_on_start=False,
            shutdown_grace=0,
            on_shutdown="suspend",
        ) as a:
            session = await a.create_session()
            stream_id = await a.start_turn(session.session_id, "go")
            subscription = b.events(stream_id)
            with anyio.fail_after(30):
                async for event in subscription:  # B follows A's turn from the store
                    events.append(event)
                    if event.type == "token" and event.data["text"] == "t20 ":
                        break
        left = time.monotonic()  # A is gone: its turn was suspended, its lease given up
        with anyio.fail_after(lease_ttl / 2):  # well before A's lease would have expired
            events += [e async for e in subscription]
        assert time.monotonic() - left < lease_ttl / 2

        types = [e.type for e in events]
        assert "cancelled" not in types and "error" not in types
        assert types.count("stream.resumed") == 1 and types[-2:] == ["done", "stream.end"]
        resumed = events[types.index("stream.resumed")]
        assert resumed.data["attempt"] == 1
        seqs = [e.seq for e in events]
        assert seqs == sorted(set(seqs))  # each once, in order
        before = seqs[: types.index("stream.resumed")]
        assert before == list(range(1, len(before) + 1))  # nothing lost up to the suspension
        assert resumed.data["last_durable_seq"] == before[-1]

        stored = await b.get_session(session.session_id)
        assert stored.active_stream_id is None
        assert [m["role"] for m in stored.messages] == ["user", "assistant"]
        assert stored.messages[-1]["content"] == "".join(f"t{i:02d} " for i in range(1, TOKENS + 1))
