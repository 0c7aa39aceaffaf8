"""RedisEventLog under two runtimes ("nodes") in one process, on one real PostgreSQL
schema (``RUNTIME_TEST_POSTGRES_DSN``) and one real Redis (``RUNTIME_TEST_REDIS_URL``,
or a private ``redis-server`` this test starts and kills): a turn run by node A is
followed and resumed on node B, cancelled from B, and survives Redis going away.
Each test skips without its server, and fails under ``CI=true``."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from postgres_server import dropped_after, new_schema, postgres_dsn
from redis_server import new_prefix, private_redis, redis_url

from runtime import Event, EventLogUnavailable, Runtime, Turn
from runtime.brokers.redis import RedisEventLog
from runtime.stores.postgres import PostgresStore


async def counting_agent(turn: Turn) -> None:
    """``tokens=N delay=S``: stream N numbered tokens, S seconds apart, with a tool call
    every tenth (so checkpoints persist the events while it runs)."""
    spec = dict(w.split("=", 1) for w in turn.user_message.split() if "=" in w)
    for i in range(1, int(spec.get("tokens", "5")) + 1):
        await turn.token(f"w{i:03d} ")
        if i % 10 == 0:
            async with turn.tool("count", {"i": i}) as call:
                call.result = {"i": i}
        await anyio.sleep(float(spec.get("delay", "0")))
    await turn.reply()


@asynccontextmanager
async def two_nodes(url: str, **broker: Any) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Runtimes A and B: one PostgreSQL schema, one Redis prefix, short leases."""
    dsn, schema, prefix = postgres_dsn(), new_schema(), new_prefix()
    async with dropped_after(dsn, [schema]), AsyncExitStack() as stack:
        nodes = []
        for name in "ab":
            rt = Runtime(
                PostgresStore(dsn, schema=schema),
                counting_agent,
                broker=RedisEventLog(url, prefix=prefix, **broker),
                node_id=f"node-{name}-{prefix}",
                lease_ttl=1.5,
                checkpoint_interval=0.1,
                recover_on_start=False,
            )
            nodes.append(await stack.enter_async_context(rt))
        yield nodes[0], nodes[1]


async def collect(rt: Runtime, stream_id: str, after: int = 0, stop: int | None = None) -> list:
    out = []
    async for event in rt.events(stream_id, after):
        out.append(event)
        if stop is not None and event.seq >= stop:
            break
    return out


async def test_b_follows_and_resumes_a_turn_run_by_a() -> None:
    async with two_nodes(redis_url()) as (a, b):
        session = await a.create_session()
        stream_id = await a.start_turn(session.session_id, "tokens=120 delay=0.005")
        first = await collect(b, stream_id, 0, stop=40)  # live, then dropped
        assert [e.seq for e in first] == list(range(1, 41))
        rest = await collect(b, stream_id, first[-1].seq)  # resumed like Last-Event-ID
        seqs = [e.seq for e in first + rest]
        assert seqs == list(range(1, seqs[-1] + 1))
        assert rest[-1].type == "stream.end" and rest[-2].type == "done"
        on_a = await collect(a, stream_id)
        assert [e.to_dict() for e in on_a] == [e.to_dict() for e in first + rest]


async def test_followers_on_b_share_one_view_and_one_read_per_batch() -> None:
    """200 subscribers joining B at once (as a burst of SSE clients does) get one view of
    the stream and share B's reads of Redis: without that, each would send its own
    ``XRANGE`` and ``XREAD`` and decode every event again."""
    async with two_nodes(redis_url()) as (a, b):
        session = await a.create_session()
        stream_id = await a.start_turn(session.session_id, "tokens=30 delay=0.01")
        views = await asyncio.gather(*(b.broker.attach(stream_id) for _ in range(200)))
        assert all(view is views[0] for view in views)
        assert views[0].remote
        results = await asyncio.gather(*(collect(b, stream_id) for _ in range(200)))
        seqs = [e.seq for e in results[0]]
        assert seqs == list(range(1, seqs[-1] + 1)) and results[0][-1].type == "stream.end"
        assert all([e.to_dict() for e in r] == [e.to_dict() for e in results[0]] for r in results)
        stats: Callable[[], dict[str, Any]] = b.broker.statistics  # type: ignore[attr-defined]
        # one read per batch of the stream (at most one per event here), not per subscriber
        assert 0 < stats()["remote_reads"] <= seqs[-1] + 2


async def pump(sub: Any, out: list[Event], waits: list[int]) -> None:
    """Follow ``sub`` as the SSE edge does: a batch, then ``next_batch_nowait`` after
    awaiting ``waiter()`` (counted in ``waits[0]``), or ``next_batch`` where there is none."""
    batch = await sub.next_batch()
    while batch:
        out.extend(batch)
        while (ready := sub.next_batch_nowait()) is None:
            waiter = sub.waiter()
            if waiter is None:
                ready = await sub.next_batch()
                break
            waits[0] += 1
            await waiter
        batch = ready


async def test_waiters_on_b_share_its_reads_and_one_cancelled_leaves_the_others() -> None:
    """Followers on B wait on the view's futures, not in reads of their own: B's reader
    task reads each batch once for all of them, and a follower that leaves mid-stream
    (a dropped SSE client) takes nothing from the others."""
    async with two_nodes(redis_url()) as (a, b):
        session = await a.create_session()
        stream_id = await a.start_turn(session.session_id, "tokens=80 delay=0.01")
        outs: list[list[Event]] = [[] for _ in range(50)]
        waits = [0]
        async with anyio.create_task_group() as tg:
            for out in outs:
                tg.start_soon(pump, b.events(stream_id), out, waits)
            leaver: list[Event] = []
            tg.start_soon(_leave_after, anyio.CancelScope(), b.events(stream_id), leaver)
        assert waits[0] > 0  # the followers waited on B's waiters
        assert 10 <= leaver[-1].seq < outs[0][-1].seq  # it left mid-stream
        seqs = [e.seq for e in outs[0]]
        assert seqs == list(range(1, seqs[-1] + 1)) and outs[0][-1].type == "stream.end"
        assert [e.type for e in outs[0]].count("token") == 80
        assert all([e.to_dict() for e in out] == [e.to_dict() for e in outs[0]] for out in outs)
        on_a = await collect(a, stream_id)
        assert [e.to_dict() for e in on_a] == [e.to_dict() for e in outs[0]]
        stats: Callable[[], dict[str, Any]] = b.broker.statistics  # type: ignore[attr-defined]
        # one read per batch (at most one per event here), not one per follower
        assert 0 < stats()["remote_reads"] <= seqs[-1] + 2


async def _leave_after(scope: anyio.CancelScope, sub: Any, out: list[Event]) -> None:
    """Follow ``sub`` until it has 10 events and waits on a waiter, then leave."""
    with scope:
        out.extend(await sub.next_batch())
        while True:
            while (ready := sub.next_batch_nowait()) is None:
                waiter = sub.waiter()
                if waiter is None:
                    ready = await sub.next_batch()
                    break
                if out[-1].seq >= 10:
                    scope.cancel()  # leave while waiting on the view's future
                await waiter
            out.extend(ready)


async def test_a_waiter_on_b_hands_a_quiet_stream_back_to_the_read_that_checks_it() -> None:
    """A stream whose owner has gone quiet (it may have died) ends B's waits once the
    view's blocking read times out: the waiter is then ``None``, so the follower goes
    back to ``next_batch``, whose read notices a dead owner (here the owner is alive
    and the next token comes that way); once events flow the waiters are back."""
    async with two_nodes(redis_url(), block_ms=100) as (a, b):
        session = await a.create_session()
        stream_id = await a.start_turn(session.session_id, "tokens=4 delay=0.6")
        sub = b.events(stream_id)
        seen = await sub.next_batch()
        stalls = waited = 0
        while seen[-1].type != "stream.end":
            ready = sub.next_batch_nowait()
            if ready is not None:
                seen.extend(ready)
                continue
            waiter = sub.waiter()
            if waiter is None:
                stalls += 1
                seen.extend(await sub.next_batch())
            else:
                waited += 1
                with anyio.fail_after(10):  # done by the read's 0.1 s timeout at the latest
                    await waiter
        assert stalls >= 2 and waited >= 2
        assert [e.seq for e in seen] == list(range(1, seen[-1].seq + 1))
        assert [e.type for e in seen].count("token") == 4


async def test_waiters_on_b_meet_redis_going_away_as_an_error(tmp_path: Path) -> None:
    """Redis going away under a follower that waits on B's view ends the wait; the
    follower's next read raises ``EventLogUnavailable`` (what the SSE edge reports)."""
    with private_redis(tmp_path) as server:
        async with two_nodes(server.url) as (a, b):
            session = await a.create_session()
            stream_id = await a.start_turn(session.session_id, "tokens=300 delay=0.01")
            seen: list[Event] = []
            waits = [0]
            follower = asyncio.ensure_future(pump(b.events(stream_id), seen, waits))
            with anyio.fail_after(20):
                while waits[0] < 5:  # following on the view's waiters
                    await anyio.sleep(0.005)
            server.stop()
            with pytest.raises(EventLogUnavailable, match="cannot be reached"):
                await asyncio.wait_for(follower, 20)
            assert 5 <= len(seen) < 300
            assert [e.seq for e in seen] == list(range(1, seen[-1].seq + 1))


@asynccontextmanager
async def owner_and_view() -> AsyncIterator[tuple[Any, Any, RedisEventLog]]:
    """Two brokers on one Redis prefix: a log the first owns, with one event sent, and
    the second's view of it, which has read that event: ``(log, view, second broker)``."""
    url, prefix = redis_url(), new_prefix()
    owner, other = RedisEventLog(url, prefix=prefix), RedisEventLog(url, prefix=prefix)
    try:
        log = owner.open("s-1", "sess")
        log.publish("token", {"text": "first"})
        await log.flush()
        view = await other.attach("s-1")
        assert [e.seq for e in await view.read(0)] == [1]
        yield log, view, other
    finally:
        await owner.aclose()
        await other.aclose()


async def test_a_reader_elsewhere_gets_a_round_of_events_in_one_read() -> None:
    """The events the owner sends in one round trip reach a reader blocked in ``XREAD``
    on another broker as one batch (a plain pipeline woke it after the first ``XADD``:
    one event, then the rest, so that node fanned each burst out twice)."""
    async with owner_and_view() as (log, view, other):
        batches: list[list[int]] = []

        async def follow() -> None:
            after = 1
            while after < 21:
                batch = await view.read(after)
                batches.append([e.seq for e in batch])
                after = batch[-1].seq

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            reads = other.statistics()["remote_reads"]
            with anyio.fail_after(10):
                while other.statistics()["remote_reads"] == reads:  # the XREAD is out
                    await anyio.sleep(0.01)
            await anyio.sleep(0.2)  # and blocked in Redis
            for i in range(20):  # one loop step: one round trip
                log.publish("token", {"text": f"t{i}"})
        assert batches == [list(range(2, 22))]


async def _calls(client: Any) -> dict[str, int]:
    """Redis's ``INFO commandstats``: calls per command since the server started
    (commands a script runs count too)."""
    info = await client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


async def _sent(broker: RedisEventLog) -> None:
    """Until Redis has every published event (through outages: flush returns early)."""
    with anyio.fail_after(20):
        while broker.degraded or broker.statistics()["pending_events"]:
            await anyio.sleep(0.02)


async def test_a_send_round_is_one_script_call_for_every_stream(tmp_path: Path) -> None:
    """Events published to two streams in one loop step go to Redis in one ``EVALSHA``
    (no ``MULTI``/``EXEC`` and no command of their own per event), and a reader on
    another broker gets each stream whole, in order."""
    with private_redis(tmp_path) as server:
        owner, other = RedisEventLog(server.url), RedisEventLog(server.url)
        admin = aioredis.Redis.from_url(server.url)
        try:
            logs = [owner.open(f"s-{i}", "sess") for i in (1, 2)]
            for log in logs:
                log.publish("token", {"text": "warm-up"})  # loads the script
            await _sent(owner)
            before = await _calls(admin)
            for i in range(20):
                for log in logs:
                    log.publish("token", {"text": f"t{i}"})
            await _sent(owner)
            after = await _calls(admin)
            calls = {k: n - before.get(k, 0) for k, n in after.items() if k != "info"}
            assert {k: n for k, n in calls.items() if n} == {
                "evalsha": 1,
                "xadd": 40,
                "hset": 2,
                "pexpire": 4,
            }
            for log in logs:
                view = await other.attach(log.stream_id)
                events = await view.read(0)
                assert [e.seq for e in events] == list(range(1, 22))
                assert [e.data["text"] for e in events[1:]] == [f"t{i}" for i in range(20)]
        finally:
            await admin.aclose()
            await owner.aclose()
            await other.aclose()


async def test_a_producer_faster_than_the_sender_loses_nothing_while_redis_answers() -> None:
    """``buffer_events`` caps what waits for Redis only while Redis is unreachable: a
    producer that publishes many more events than that between two round trips (here
    10x, in one loop step) makes no hole, and a reader elsewhere gets every event."""
    url, prefix = redis_url(), new_prefix()
    owner = RedisEventLog(url, prefix=prefix, buffer_events=50)
    other = RedisEventLog(url, prefix=prefix)
    try:
        log = owner.open("s-1", "sess")
        for i in range(500):
            log.publish("token", {"text": f"t{i}"})
        await _sent(owner)
        assert owner.statistics()["dropped_events"] == 0
        view = await other.attach("s-1")
        got: list[Event] = []
        while len(got) < 500:
            got += await view.read(len(got))
        assert [e.data["text"] for e in got] == [f"t{i}" for i in range(500)]
    finally:
        await owner.aclose()
        await other.aclose()


async def test_the_send_script_is_loaded_again_after_a_flush_and_a_restart(
    tmp_path: Path,
) -> None:
    """``SCRIPT FLUSH`` (or a restarted Redis, which has no scripts) makes the next
    round's ``EVALSHA`` fail with ``NOSCRIPT``: the script is loaded again and the round
    sent, with no event lost and the broker not left degraded."""
    with private_redis(tmp_path) as server:
        owner = RedisEventLog(server.url)
        admin = aioredis.Redis.from_url(server.url)
        try:
            log = owner.open("s-1", "sess")
            log.publish("token", {"text": "first"})
            await _sent(owner)
            await admin.script_flush()
            for i in range(5):
                log.publish("token", {"text": f"after flush {i}"})
            await _sent(owner)
            entries = await admin.xrange(f"{owner.prefix}:s-1")
            assert [e[0] for e in entries] == [f"{i}-0".encode() for i in range(1, 7)]
            server.stop()
            server.start()  # empty, without the script
            await admin.aclose()
            admin = aioredis.Redis.from_url(server.url)
            for i in range(3):
                log.publish("token", {"text": f"after restart {i}"})
            await _sent(owner)
            entries = await admin.xrange(f"{owner.prefix}:s-1")
            assert [e[0] for e in entries] == [b"7-0", b"8-0", b"9-0"]
            assert await admin.hget(f"{owner.prefix}:s-1:meta", "session") == b"sess"
            assert not owner.degraded
        finally:
            await admin.aclose()
            await owner.aclose()


async def test_a_user_without_scripting_degrades_until_it_is_allowed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis user whose ACL denies scripts cannot send a round: the broker logs Redis's
    reason once, reports ``degraded`` and buffers (its own readers still get every
    event); once the ACL allows ``EVALSHA`` the buffer is sent and it recovers."""
    with private_redis(tmp_path) as server:
        admin = aioredis.Redis.from_url(server.url)
        await admin.acl_setuser(
            "limited",
            enabled=True,
            passwords=["+pw"],
            keys=["*"],
            channels=["*"],
            commands=["+@all", "-@scripting"],
        )
        owner = RedisEventLog(f"redis://limited:pw@127.0.0.1:{server.port}/0")
        try:
            log = owner.open("s-1", "sess")
            with caplog.at_level(logging.WARNING, logger="runtime.brokers.redis"):
                for i in range(5):
                    log.publish("token", {"text": f"t{i}"})
                with anyio.fail_after(10):
                    while not owner.degraded:
                        await anyio.sleep(0.02)
            assert any(
                "refused the send" in r.getMessage() and "evalsha" in r.getMessage()
                for r in caplog.records
            )
            assert [e.seq for e in log.read_nowait(0)] == [1, 2, 3, 4, 5]
            assert owner.statistics()["pending_events"] == 5
            assert await admin.exists(f"{owner.prefix}:s-1") == 0  # nothing written
            await admin.acl_setuser("limited", commands=["+@scripting"])
            await _sent(owner)
            entries = await admin.xrange(f"{owner.prefix}:s-1")
            assert [e[0] for e in entries] == [f"{i}-0".encode() for i in range(1, 6)]
        finally:
            await owner.aclose()
            await admin.aclose()


async def test_a_refused_command_is_logged_and_the_rest_of_the_round_is_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A key of the wrong type refuses its stream's ``XADD``s: the error is logged
    (naming Redis's reason), the other stream of the same round is still written, and
    the broker is not degraded (Redis is there; retrying would fail the same)."""
    url, prefix = redis_url(), new_prefix()
    owner, other = RedisEventLog(url, prefix=prefix), RedisEventLog(url, prefix=prefix)
    admin = aioredis.Redis.from_url(url)
    try:
        await admin.set(f"{prefix}:bad", "not a stream")
        bad, good = owner.open("bad", "sess"), owner.open("good", "sess")
        with caplog.at_level(logging.ERROR, logger="runtime.brokers.redis"):
            for i in range(3):
                bad.publish("token", {"text": f"b{i}"})
                good.publish("token", {"text": f"g{i}"})
            await _sent(owner)
        refused = [r.getMessage() for r in caplog.records]
        assert len(refused) == 3 and all("WRONGTYPE" in m for m in refused)
        assert await admin.get(f"{prefix}:bad") == b"not a stream"
        view = await other.attach("good")
        assert [e.data["text"] for e in await view.read(0)] == ["g0", "g1", "g2"]
        assert not owner.degraded
    finally:
        await admin.delete(f"{prefix}:bad", f"{prefix}:bad:meta")
        await admin.aclose()
        await owner.aclose()
        await other.aclose()


async def test_the_view_sends_its_next_read_after_the_woken_waiters_ran() -> None:
    """The follower's next ``XREAD`` goes out after the waiters its last read woke have
    run (their fan-out), not before: each woken waiter still sees the read count of the
    read that woke it, and the next read is out once they are done."""
    async with owner_and_view() as (log, view, other):
        seen: list[tuple[int, int]] = []  # (last seq the waiter got, reads when it ran)

        async def waiter() -> None:
            after = 1
            while after < 21:
                wait = view.waiter(after)
                assert wait is not None
                await wait
                seen.append((view.read_nowait(after)[-1].seq, other.statistics()["remote_reads"]))
                after = seen[-1][0]

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(waiter)
            reads = other.statistics()["remote_reads"]
            with anyio.fail_after(10):
                while other.statistics()["remote_reads"] == reads:  # the follower's XREAD
                    await anyio.sleep(0.01)
            reads += 1
            await anyio.sleep(0.2)  # blocked in Redis
            for i in range(20):  # one round
                log.publish("token", {"text": f"t{i}"})
        assert seen == [(21, reads)] * 3
        with anyio.fail_after(10):
            while other.statistics()["remote_reads"] == reads:  # sent after them
                await anyio.sleep(0.01)


async def test_closing_the_broker_ends_a_waiter_on_a_quiet_stream() -> None:
    """A subscriber waiting on a view whose reader task is blocked in ``XREAD`` is woken
    when its broker closes (a server shutting down), and the view then offers no waiter
    (its readers go back to ``read_within``), rather than left waiting."""
    async with owner_and_view() as (_, view, other):
        waiter = view.waiter(1)
        assert waiter is not None
        await anyio.sleep(0.1)  # the reader task is blocked in XREAD (1 s)
        with anyio.fail_after(5):
            await other.aclose()
            await waiter
        assert view.waiter(1) is None  # stalled: a reader goes back to read_within


async def test_cancel_from_b_ends_the_turn_on_a_like_a_local_cancel() -> None:
    async with two_nodes(redis_url()) as (a, b):
        session = await a.create_session()
        sid = session.session_id
        stream_id = await a.start_turn(sid, "tokens=100000 delay=0.01")
        await collect(b, stream_id, 0, stop=20)
        status = await b.session_status(sid)
        assert status["active_stream_id"] == stream_id and status["live"] is True
        assert await b.cancel(stream_id) is True
        # b.cancel returns once the store shows the stream ended; A drops its live
        # handle right after that final save, a moment later under load.
        with anyio.fail_after(5):
            await a.wait_stream(stream_id)
        assert not a.is_live(stream_id)
        events = await collect(b, stream_id)
        assert [e.type for e in events[-2:]] == ["cancelled", "stream.end"]
        assert sum(e.type == "cancelled" for e in events) == 1
        stored = (await b.get_session(sid)).messages
        assert [m["role"] for m in stored if m["role"] == "user"] == ["user"]
        assert sum(bool(m.get("_partial")) for m in stored) <= 1
        kept = "".join(
            m["content"] or "" for m in stored[1:] if m["role"] == "assistant" and not m.get("type")
        )
        assert kept == "".join(e.data["text"] for e in events if e.type == "token")  # once
        assert [m.get("type") for m in stored].count("cancelled") == 1
        assert stored[-1].get("type") == "cancelled"
        assert await b.cancel(stream_id) is False  # over: nothing to cancel
        again = await b.start_turn(sid, "tokens=2")  # free at once
        assert (await collect(a, again))[-2].type == "done"


async def test_redis_going_away_keeps_the_turn_and_the_store_fills_the_hole(
    tmp_path: Path,
) -> None:
    with private_redis(tmp_path) as server:
        async with two_nodes(server.url, buffer_events=20) as (a, b):
            session = await a.create_session()
            stream_id = await a.start_turn(session.session_id, "tokens=200 delay=0.01")
            seen = await collect(b, stream_id, 0, stop=30)
            server.stop()
            with pytest.raises(EventLogUnavailable) as caught:
                await collect(b, stream_id, seen[-1].seq)
            assert "cannot be reached" in str(caught.value)
            await a.wait_stream(stream_id)  # the turn ran to its end regardless
            assert a.broker.degraded
            stats: Callable[[], dict[str, Any]] = a.broker.statistics  # type: ignore[attr-defined]
            assert stats()["dropped_events"] > 0  # the buffer kept its newest 20 only
            server.start()  # empty: it kept nothing
            with anyio.fail_after(20):
                while a.broker.degraded or stats()["pending_events"]:
                    await anyio.sleep(0.05)
            rest = await collect(b, stream_id, seen[-1].seq)
            seqs = [e.seq for e in seen + rest]
            assert seqs == list(range(1, seqs[-1] + 1))
            assert [e.type for e in rest[-2:]] == ["done", "stream.end"]
            tokens = "".join(e.data["text"] for e in seen + rest if e.type == "token")
            assert tokens == "".join(f"w{i:03d} " for i in range(1, 201))


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"url": "http://127.0.0.1:6379"}, "url"),
        ({"prefix": "two words"}, "prefix"),
        ({"max_events": 0}, "max_events"),
        ({"buffer_events": True}, "buffer_events"),
        ({"retention": -1.0}, "retention"),
        ({"live_ttl": 0}, "live_ttl"),
    ],
)
def test_bad_settings_are_refused_naming_the_parameter(kwargs: dict[str, Any], named: str) -> None:
    url = kwargs.pop("url", "redis://127.0.0.1:1/0")
    with pytest.raises(ValueError, match=f"invalid {named} "):
        RedisEventLog(url, **kwargs)


def test_serve_refuses_an_event_log_that_is_not_redis(tmp_path: Path) -> None:
    """The CLI's one-line error, before anything is started or written."""
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "runtime", "serve", "tests/http/sse_agents.py:scripted"),
            *("--store", str(tmp_path / "store"), "--event-log", "http://cache:6379"),
        ],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "runtime: error: invalid --event-log 'http://cache:6379': must be a "
        "redis://host:port/db URL"
    )
    assert not (tmp_path / "store").exists()
