"""WREDIS: the Redis Streams event log (``RUNTIME_BENCH_REDIS_URL``, else
``RUNTIME_TEST_REDIS_URL``; skipped with a message without either).

* W4 across processes: one producer here, one subscriber in a child process
  (``_wredis_child``), 200,000 token events (the ``--quick`` size is smaller):
  - ``RedisEventLog`` alone: ``log.publish`` here, ``attach`` + ``read`` there;
  - end to end: a turn's ``turn.token`` in a ``Runtime(MemoryStore(), broker=
    RedisEventLog)`` here, ``attach`` + ``read`` there;
  - the floor: a bare loop, each burst of events sent as one pipeline of ``XADD``
    (the same JSON per event), ``XREAD BLOCK`` there decoding each entry;
  - the in-memory log in one process, for scale.
  Passes interleave the systems; medians, spread (min-max) and ratios to the floor.
* W5 over two nodes: two ``runtime serve``-like servers (``_w5_server`` with
  ``--event-log``), the turn on node A, the subscribers split between A and B (B serves
  the stream from Redis); lost events and delivery latency as in W5.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from ._config import Context
from ._labels import size_label
from ._report import Result, Table, fmt, fmt_ratio
from ._stats import median
from .w4_events import _runtime_log
from .w5_sse import _read_to_end, _server_stats, child_env, run_clients

ID = "WREDIS"
TITLE = "Redis event log: W4 across processes, W5 over two nodes"

_DATA = {"text": "tok "}

LABELS = {
    "redis_log": "RedisEventLog (publish -> attach/read in another process)",
    "redis_turn": "runtime end to end (turn.token -> read in another process)",
    "bare": "bare XADD pipeline / XREAD BLOCK loop (floor)",
    "memory": "in-memory event log, one process (for scale)",
}


def redis_url() -> str | None:
    return os.environ.get("RUNTIME_BENCH_REDIS_URL") or os.environ.get("RUNTIME_TEST_REDIS_URL")


async def _line(proc: Any) -> bytes:
    """The next line the child writes to stdout."""
    line = b""
    while not line.endswith(b"\n"):
        line += await proc.stdout.receive(1)
    return line


async def _across(url: str, mode: str, produce: Callable[..., Awaitable[None]]) -> float:
    """Events/s from the first token to the child's last read. The child follows the
    stream in ``mode``; ``produce(prefix, follow)`` sends the stream and awaits
    ``follow(stream_id)`` once its first entry is out: that hands the child the id and
    returns when the child has read the entry (the clock starts then)."""
    prefix = "bench_" + uuid.uuid4().hex[:12]
    cmd = [sys.executable, "-m", "benchmarks._wredis_child", "--url", url, "--prefix", prefix]
    proc = await anyio.open_process([*cmd, "--mode", mode], env=child_env(), stderr=None)
    clock: list[float] = []
    streams: list[str] = []

    async def follow(stream_id: str) -> None:
        streams.append(stream_id)
        assert proc.stdin is not None
        await proc.stdin.send(stream_id.encode() + b"\n")
        with anyio.fail_after(60):
            assert await _line(proc) == b"attached\n"
        clock.append(time.perf_counter())

    try:
        await produce(prefix, follow)
        with anyio.fail_after(300):
            done = await _line(proc)
        elapsed = time.perf_counter() - clock[0]
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.aclose()
        for stream_id in streams:
            await _delete(url, prefix, stream_id)
    return int(done.split()[1]) / elapsed


async def _delete(url: str, prefix: str, stream: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        await client.delete(f"{prefix}:{stream}", f"{prefix}:{stream}:meta")
    finally:
        await client.aclose()


async def _redis_log(url: str, n: int, every: int) -> float:
    from runtime.brokers.redis import RedisEventLog

    async def produce(prefix: str, follow: Callable[[str], Awaitable[None]]) -> None:
        broker = RedisEventLog(url, prefix=prefix, max_events=n + 16)
        try:
            log = broker.open(uuid.uuid4().hex[:16] + ".bench", "bench")
            log.publish("stream.started", {})
            await log.flush()
            await follow(log.stream_id)
            for i in range(1, n + 1):
                log.publish("token", dict(_DATA))
                if i % every == 0:
                    await asyncio.sleep(0)
            log.publish("stream.end", {})
            await log.flush()
        finally:
            await broker.aclose()

    return await _across(url, "runtime", produce)


async def _redis_turn(url: str, n: int, every: int) -> float:
    from runtime import MemoryStore, Runtime
    from runtime.brokers.redis import RedisEventLog

    go = anyio.Event()

    async def agent(turn: Any) -> None:
        await go.wait()
        for i in range(1, n + 1):
            await turn.token("tok ")
            if i % every == 0:
                await asyncio.sleep(0)

    async def produce(prefix: str, follow: Callable[[str], Awaitable[None]]) -> None:
        broker = RedisEventLog(url, prefix=prefix, max_events=n + 16)
        async with Runtime(MemoryStore(), agent, broker=broker) as rt:
            session = rt.new_session(session_id="bench")
            stream_id = await rt.start_turn(session.session_id, "go")
            await rt.broker.get(stream_id).flush()
            await follow(stream_id)
            go.set()
            await rt.wait_stream(stream_id)

    return await _across(url, "runtime", produce)


async def _bare(url: str, n: int, every: int) -> float:
    import redis.asyncio as aioredis

    from runtime._events import Event

    async def produce(prefix: str, follow: Callable[[str], Awaitable[None]]) -> None:
        client = aioredis.Redis.from_url(url)
        stream = uuid.uuid4().hex[:16] + ".bench"
        key = f"{prefix}:{stream}"

        async def send(events: list[Event]) -> None:
            pipe = client.pipeline(transaction=False)
            for e in events:
                pipe.xadd(key, {"e": e.json()}, id=f"{e.seq}-0")
            await pipe.execute()

        try:
            await send([Event(1, stream, "bench", "stream.started", {}, time.time())])
            await follow(stream)
            burst: list[Event] = []
            for i in range(1, n + 1):
                burst.append(Event(i + 1, stream, "bench", "token", dict(_DATA), time.time()))
                if i % every == 0:
                    await send(burst)
                    burst = []
            burst.append(Event(n + 2, stream, "bench", "stream.end", {}, time.time()))
            await send(burst)
        finally:
            await client.aclose()

    return await _across(url, "bare", produce)


async def _memory(_url: str, n: int, every: int) -> float:
    return await _runtime_log(n, every)


SYSTEMS: dict[str, Callable[[str, int, int], Awaitable[float]]] = {
    "bare": _bare,
    "redis_log": _redis_log,
    "redis_turn": _redis_turn,
    "memory": _memory,
}


async def _w4(ctx: Context, url: str, res: Result) -> Table:
    cfg = ctx.config
    n, every = cfg.w4_events, cfg.w4_yield_every
    samples: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    for _ in range(cfg.w4_passes):
        for name, func in SYSTEMS.items():
            samples[name].append(await func(url, n, every))
    floor = median(samples["bare"])
    table = Table(
        f"W4 across processes through Redis ({size_label(n)} events; x = ratio to the floor)",
        ["system", "events/s", "min-max", "vs bare loop"],
    )
    for name, values in samples.items():
        med = median(values)
        res.systems[f"w4_{name}"] = {"events_per_s": round(med, 1), "samples": values}
        table.add(
            LABELS[name], fmt(med), f"{fmt(min(values))}-{fmt(max(values))}", fmt_ratio(med / floor)
        )
    table.footnotes.append(
        f"median of {cfg.w4_passes} passes, systems interleaved; the producer yields every "
        f"{every} events and the floor sends each such burst as one pipeline; the clock runs "
        "from the first token to the child's read of the last"
    )
    return table


async def _start_node(cmd: list[str]) -> tuple[Any, int]:
    proc = await anyio.open_process(
        cmd, env=child_env(), stderr=None
    )  # a log nobody reads must not fill a pipe
    with anyio.fail_after(60):
        line = await _line(proc)
    return proc, int(line.split()[1])


async def _stop(proc: Any) -> bytes:
    out = b""
    with anyio.move_on_after(20):
        out = await _read_to_end(proc.stdout)
        await proc.wait()
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
    await proc.aclose()
    return out


async def _w5(ctx: Context, url: str, res: Result) -> Table:
    cfg = ctx.config
    subs_n, events = cfg.w5_subscribers, cfg.w5_events
    go = ctx.tmp / "wredis-go"
    prefix = "bench_" + uuid.uuid4().hex[:12]
    base = [sys.executable, "-m", "benchmarks._w5_server", "--events", str(events)]
    base += ["--burst", str(cfg.w5_burst), "--interval", str(cfg.w5_burst_interval)]
    base += ["--event-log", url, "--event-log-prefix", prefix]
    node_a, port_a = await _start_node(base)
    node_b, port_b = await _start_node([*base, "--stop-file", str(go) + ".stop"])
    stream_id = ""
    try:
        import httpx

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_a}", timeout=30) as c:
            session_id = (await c.post("/api/sessions", json={})).json()["session_id"]
            r = await c.post(f"/api/sessions/{session_id}/turns", json={"message": str(go)})
            stream_id = r.json()["stream_id"]
        # node B's probe of what a burst leaves behind follows this stream
        go.with_name(go.name + ".stream").write_text(stream_id)
        nominal = (events / cfg.w5_burst) * cfg.w5_burst_interval
        commands0 = await _command_calls(url)
        clients = await run_clients(
            [port_a, port_b], stream_id, subs_n, events, go, 60 + 5 * nominal
        )
        commands = _calls_since(commands0, await _command_calls(url))
        elapsed, client_cpu = clients["stream_s"], clients["client_cpu_s"]
        go.with_name(go.name + ".stop").write_bytes(b"stop")
    finally:
        stats_a = _server_stats(await _stop(node_a))
        stats_b = _server_stats(await _stop(node_b))
        await _delete(url, prefix, stream_id)
    table = Table(
        f"W5 over two nodes on one Redis: {size_label(subs_n)} subscribers (half on each), "
        f"{size_label(events)} events",
        [
            "node",
            "lost events",
            "p50 ms",
            "p99 ms",
            "max ms",
            "CPU s",
            "objects/sub/burst",
            "stream s",
            "nominal s",
        ],
    )
    for name, port, stats in (
        ("A (runs the turn)", port_a, stats_a),
        ("B (from Redis)", port_b, stats_b),
    ):
        group = clients["ports"][str(port)]
        lost = group["subscribers"] * events - group["tokens"]
        key = "w5_node_a" if name.startswith("A") else "w5_node_b"
        res.systems[key] = {
            "lost": lost,
            "gaps": group["gaps"],
            "p50_ms": group["p50_ms"],
            "p99_ms": group["p99_ms"],
            "max_ms": group["max_ms"],
            "cpu_s": stats.get("cpu_s"),
            "burst_objects_per_subscriber": (
                round(stats["burst_new_objects"] / group["subscribers"], 2)
                if "burst_new_objects" in stats and group["subscribers"]
                else None
            ),
            "burst_new_types": stats.get("burst_new_types"),
        }
        row = res.systems[key]
        table.add(
            name,
            str(lost),
            fmt(row["p50_ms"]),
            fmt(row["p99_ms"]),
            fmt(row["max_ms"]),
            fmt(row["cpu_s"]),
            fmt(row["burst_objects_per_subscriber"]),
            fmt(elapsed),
            fmt(nominal),
        )
    res.extra["w5_node_a_cpu_s"] = stats_a.get("cpu_s")
    res.extra["w5_client_cpu_s"] = round(client_cpu, 3)
    res.extra["w5_client_loop"] = clients["loop"]
    res.extra["w5_redis_calls_per_event"] = {k: round(v / events, 2) for k, v in commands.items()}
    table.footnotes.append(
        f"the agent on A emits {cfg.w5_burst} tokens every {cfg.w5_burst_interval} s; "
        "latency = receipt - publish ts (one machine, one clock); CPU s = the node's "
        "process CPU from the first token (A) or the go signal (B) to the end; the "
        f"load generator (one process on the {clients['loop']} loop, every subscriber of "
        f"both nodes; the nodes run the stock asyncio loop) used {client_cpu:.1f} CPU s "
        "meanwhile; objects/sub/burst = GC-tracked objects one burst left alive on the "
        "node, per subscriber of that node; Redis commands per event (both nodes): "
        + ", ".join(f"{k} {v / events:.2f}" for k, v in sorted(commands.items()))
    )
    return table


async def _command_calls(url: str) -> dict[str, int]:
    """``INFO commandstats``: calls per command since the server started."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        info = await client.info("commandstats")
    finally:
        await client.aclose()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def _calls_since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Calls per command between two :func:`_command_calls` (INFO's own left out)."""
    calls = {k: n - before.get(k, 0) for k, n in after.items() if k != "info"}
    return {k: n for k, n in calls.items() if n > 0}


async def run(ctx: Context) -> Result:
    """W4 across processes and W5 over two nodes, on the Redis of the environment."""
    res = Result(ID, TITLE, "events/s")
    url = redis_url()
    if url is None:
        reason = "skipped: set RUNTIME_BENCH_REDIS_URL or RUNTIME_TEST_REDIS_URL"
        print(f"[{ID}] {reason}", flush=True)
        res.notes["redis"] = reason
        table = Table(TITLE, ["system", "result"])
        table.add("RedisEventLog", reason)
        res.tables.append(table)
        return res
    res.tables.append(await _w4(ctx, url, res))
    res.tables.append(await _w5(ctx, url, res))
    return res
