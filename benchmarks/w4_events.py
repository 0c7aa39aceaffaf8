"""W4: one producer -> one subscriber, small token events, events/s.

Every system gets the same producer: build one token event (seq, ids, type, data,
timestamp) per step and yield to the event loop every ``w4_yield_every`` events (a
token stream arrives in network-sized bursts). The runtime rows go through the
runtime's event log with seq numbers and replay retention on; the baselines are
``asyncio.Queue`` (the ratio's denominator) and ``anyio.create_memory_object_stream(1024)``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._config import Context
from ._gcwatch import GcWatch
from ._labels import size_label
from ._report import Result, Table, fmt, fmt_ratio
from ._rt import runtime_missing
from ._stats import median
from .peers import missing

ID = "W4"
TITLE = "W4 one producer -> one subscriber (median events/s; x = ratio to asyncio.Queue)"

_DATA = {"text": "tok "}
_STREAM = "stream-w4"
_SESSION = "session-w4"

LABELS = {
    "runtime": "runtime event log (MemoryBroker/EventLog)",
    "runtime_turn": "runtime end to end (turn.token -> rt.events)",
    "asyncio_queue": "asyncio.Queue (baseline)",
    "asyncio_queue_bare": "asyncio.Queue, bare tuples, no Event object",
    "anyio_stream": "anyio memory object stream (1024)",
    "langgraph_custom": "LangGraph custom stream (astream)",
}


def _event_class() -> Any:
    """The runtime's ``Event`` class, imported once per run: an import statement per
    event (what this harness once did) costs more than the queue itself and made the
    baselines look 2x slower than they are."""
    from runtime._events import Event

    return Event


async def _asyncio_queue(n: int, every: int) -> float:
    q: asyncio.Queue[Any] = asyncio.Queue()
    event = _event_class()

    async def produce() -> None:
        for i in range(1, n + 1):
            await q.put(event(i, _STREAM, _SESSION, "token", dict(_DATA), time.time()))
            if i % every == 0:
                await asyncio.sleep(0)

    async def consume() -> None:
        for _ in range(n):
            await q.get()

    t0 = time.perf_counter()
    await asyncio.gather(produce(), consume())
    return n / (time.perf_counter() - t0)


async def _asyncio_queue_bare(n: int, every: int) -> float:
    q: asyncio.Queue[Any] = asyncio.Queue()

    async def produce() -> None:
        for i in range(1, n + 1):
            await q.put((i, "token", _DATA))
            if i % every == 0:
                await asyncio.sleep(0)

    async def consume() -> None:
        for _ in range(n):
            await q.get()

    t0 = time.perf_counter()
    await asyncio.gather(produce(), consume())
    return n / (time.perf_counter() - t0)


async def _anyio_stream(n: int, every: int) -> float:
    import anyio

    send, receive = anyio.create_memory_object_stream[Any](1024)
    event = _event_class()

    async def produce() -> None:
        async with send:
            for i in range(1, n + 1):
                await send.send(event(i, _STREAM, _SESSION, "token", dict(_DATA), time.time()))
                if i % every == 0:
                    await asyncio.sleep(0)

    async def consume() -> None:
        async with receive:
            async for _ev in receive:
                pass

    t0 = time.perf_counter()
    await asyncio.gather(produce(), consume())
    return n / (time.perf_counter() - t0)


async def _runtime_log(n: int, every: int) -> float:
    from runtime.brokers.memory import MemoryBroker

    broker = MemoryBroker()
    log = broker.open(_STREAM, _SESSION)
    received = 0

    async def produce() -> None:
        for i in range(1, n + 1):
            log.publish("token", dict(_DATA))
            if i % every == 0:
                await asyncio.sleep(0)
        log.publish("stream.end", {})

    async def consume() -> None:
        nonlocal received
        after = 0
        while True:
            batch = await log.read(after)
            if not batch:
                return
            after = batch[-1].seq
            received += sum(1 for ev in batch if ev.type == "token")

    t0 = time.perf_counter()
    await asyncio.gather(produce(), consume())
    elapsed = time.perf_counter() - t0
    if received != n:
        raise RuntimeError(f"runtime event log delivered {received} of {n} events")
    return n / elapsed


async def _runtime_turn(n: int, every: int) -> float:
    from runtime import MemoryStore, Runtime

    async def agent(turn: Any) -> None:
        for i in range(1, n + 1):
            await turn.token("tok ")
            if i % every == 0:
                await asyncio.sleep(0)

    async with Runtime(MemoryStore(), agent) as rt:
        session = rt.new_session(title="w4")
        t0 = time.perf_counter()
        stream_id = await rt.start_turn(session.session_id, "go")
        received = 0
        async for ev in rt.events(stream_id):
            if ev.type == "token":
                received += 1
                if received == n:
                    elapsed = time.perf_counter() - t0
        await rt.wait_stream(stream_id)
    if received != n:
        raise RuntimeError(f"runtime delivered {received} of {n} token events")
    return n / elapsed


async def _langgraph(n: int, every: int) -> float:
    from .peers.langgraph import custom_stream_rate

    return await custom_stream_rate(n, every)


def _systems() -> list[tuple[str, Callable[[int, int], Awaitable[float]], str | None]]:
    broker = runtime_missing("broker")
    return [
        ("runtime", _runtime_log, broker),
        (
            "runtime_turn",
            _runtime_turn,
            runtime_missing("runtime") or runtime_missing("memorystore"),
        ),
        ("asyncio_queue", _asyncio_queue, None),
        ("asyncio_queue_bare", _asyncio_queue_bare, None),
        ("anyio_stream", _anyio_stream, None),
        ("langgraph_custom", _langgraph, missing("langgraph_sqlite")),
    ]


async def run(ctx: Context) -> Result:
    """Run every W4 system ``w4_passes`` times, interleaved, and tabulate the medians."""
    cfg = ctx.config
    n, every = cfg.w4_events, cfg.w4_yield_every
    res = Result(ID, TITLE, "events/s", extra={"events": n, "yield_every": every})
    systems = _systems()
    samples: dict[str, list[float]] = {name: [] for name, _f, reason in systems if reason is None}
    gc_ms: dict[str, list[float]] = {name: [] for name in samples}
    for name, _f, reason in systems:
        if reason is not None:
            res.notes[name] = reason
    for _ in range(cfg.w4_passes):
        for name, func, reason in systems:
            if reason is None:
                with GcWatch() as watch:
                    samples[name].append(await func(n, every))
                gc_ms[name].append(watch.total * 1000)
    key = str(n)
    queue = median(samples["asyncio_queue"])
    table = Table(
        TITLE, ["system", f"events/s ({size_label(n)} events)", "vs asyncio.Queue", "GC ms/pass"]
    )
    for name, _f, _r in systems:
        if name in res.notes:
            res.systems[name] = {key: None}
            table.add(LABELS[name], res.notes[name], "", "")
            continue
        med = median(samples[name])
        res.systems[name] = {key: round(med, 1)}
        table.add(LABELS[name], fmt(med), fmt_ratio(med / queue), fmt(median(gc_ms[name])))
    table.footnotes.append(
        f"median of {cfg.w4_passes} passes per system, systems interleaved; the producer "
        f"yields to the loop every {every} events; baselines carry the same Event objects "
        "(seq, ids, type, data, ts) the runtime builds, except the 'bare tuples' row"
    )
    res.extra["gc_ms_per_pass"] = {k: round(median(v), 1) for k, v in gc_ms.items()}
    table.footnotes.append(
        "GC ms/pass: time CPython's cyclic collector ran during a pass (gc.callbacks); it "
        "grows with every object alive in the process, including what earlier workloads "
        "and the peers' imports left"
    )
    res.tables.append(table)
    return res
