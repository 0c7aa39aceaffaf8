"""W6 in a child process (so that its peak RSS is its own): T concurrent live turns in
one Runtime, each streaming tokens, making one tool call (which advances the activity
counter, so checkpoints happen) and replying; one subscriber per turn measures event
latency (publish ``ts`` -> receipt). Prints one JSON object on stdout. The agent sleeps
and the subscribers run as the floor's do (``asyncio.sleep``, bare asyncio tasks), so
what differs from the floor is the runtime.

``--store bare`` runs the same schedule on bare asyncio tasks and queues: the event
loop's own floor at that load.

``python -m benchmarks._w6_child --store memory|file|bare --turns T --tokens K
--interval S --root DIR``: always with CPython's default collector settings.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import orjson

from ._gcwatch import GcWatch
from ._stats import peak_rss_bytes, percentile

_go = anyio.Event()


async def _agent(turn: Any) -> None:
    await _go.wait()
    tokens, interval = _params["tokens"], _params["interval"]
    for i in range(tokens):
        await turn.token(f"tok{i} ")
        if i == tokens // 2:
            async with turn.tool("grep", {"pattern": "TaskGroup"}) as call:
                call.result = "src/a.py:1: async with anyio.create_task_group() as tg:"
        # the model's pause between tokens, slept as the floor's turns sleep it:
        # anyio.sleep would add two coroutines per token that are the agent's, not
        # the runtime's (the run is on asyncio either way)
        await asyncio.sleep(interval)
    await turn.reply("done.")


_params: dict[str, Any] = {}


def _rss() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096


async def _bare(args: argparse.Namespace) -> dict[str, Any]:
    """The floor: the same turns as bare asyncio tasks, one ``asyncio.Queue`` per turn
    carrying (seq, ts) to one subscriber task; no persistence, no runtime."""

    latencies: list[float] = []
    received = {"token": 0, "end": 0}
    go = asyncio.Event()
    rss_before = _rss()

    async def turn(q: asyncio.Queue[Any]) -> None:
        await go.wait()
        for i in range(args.tokens + 1):
            q.put_nowait((i, time.time()))
            if i < args.tokens:
                await asyncio.sleep(args.interval)
        q.put_nowait(None)

    async def follow(q: asyncio.Queue[Any]) -> None:
        while (item := await q.get()) is not None:
            latencies.append(time.time() - item[1])
            received["token"] += 1
        received["end"] += 1

    t_start = time.perf_counter()
    tasks = []
    for _ in range(args.turns):
        q: asyncio.Queue[Any] = asyncio.Queue()
        tasks += [asyncio.create_task(turn(q)), asyncio.create_task(follow(q))]
    await asyncio.sleep(0)
    t_started = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    t_done = time.perf_counter()
    return _summary(
        args, latencies, received, [_rss()], rss_before, args.turns, t_start, t_started, t_done
    )


def _summary(
    args: argparse.Namespace,
    latencies: list[float],
    received: dict[str, int],
    rss_samples: list[int],
    rss_before: int,
    live: int,
    t_start: float,
    t_started: float,
    t_done: float,
) -> dict[str, Any]:
    return {
        "turns": args.turns,
        "live_at_go": live,
        "tokens_per_turn": args.tokens,
        "token_interval_s": args.interval,
        "start_s": round(t_started - t_start, 3),
        "stream_s": round(t_done - t_started, 3),
        "tokens_received": received["token"],
        "tokens_expected": args.turns * (args.tokens + 1),  # reply() streams one more token
        "checkpoint_events": received.get("checkpoint", 0),
        "streams_ended": received["end"],
        "p50_ms": percentile(latencies, 50) * 1000 if latencies else None,
        "p99_ms": percentile(latencies, 99) * 1000 if latencies else None,
        "max_ms": max(latencies) * 1000 if latencies else None,
        "rss_before_bytes": rss_before,
        "rss_sampled_peak_bytes": max(rss_samples),
        "peak_rss_bytes": peak_rss_bytes(),
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    if args.store == "bare":
        return await _bare(args)
    from runtime import Runtime

    if args.store == "memory":
        from runtime import MemoryStore

        store: Any = MemoryStore()
    else:
        from runtime.stores.files import FileStore

        store = FileStore(Path(args.root))
    _params.update(tokens=args.tokens, interval=args.interval)
    latencies: list[float] = []
    received = {"token": 0, "checkpoint": 0, "end": 0}
    rss_samples: list[int] = []
    rss_before = _rss()
    tracked_before = len(gc.get_objects())

    async def follow(rt: Any, stream_id: str) -> None:
        async for ev in rt.events(stream_id):
            if ev.type == "token":
                latencies.append(time.time() - ev.ts)
                received["token"] += 1
            elif ev.type == "checkpoint":
                received["checkpoint"] += 1
            elif ev.type == "stream.end":
                received["end"] += 1

    async def sample_rss(stop: anyio.Event) -> None:
        while not stop.is_set():
            rss_samples.append(_rss())
            with anyio.move_on_after(0.2):
                await stop.wait()

    t_start = time.perf_counter()
    async with (
        Runtime(store, _agent, checkpoint_interval=1.0) as rt,
        anyio.create_task_group() as tg,
    ):
        stop = anyio.Event()
        tg.start_soon(sample_rss, stop)
        # Each subscriber is a bare asyncio task, as the floor's are: how a host runs
        # its subscribers is the host's choice, and an anyio task group's task (its
        # task state, the wrapper coroutine) would be counted against the runtime.
        subs: list[asyncio.Task[None]] = []

        async def start(i: int) -> None:
            session = rt.new_session(title=f"w6 {i}")
            stream_id = await rt.start_turn(session.session_id, f"question {i}")
            subs.append(asyncio.create_task(follow(rt, stream_id)))

        batch = 100
        for lo in range(0, args.turns, batch):
            async with anyio.create_task_group() as starters:
                for i in range(lo, min(lo + batch, args.turns)):
                    starters.start_soon(start, i)
        live = rt.statistics()["live_streams"]
        # GC-tracked objects each live turn holds while it waits (its subscriber
        # included): what every full collection walks; counted outside both timings
        counting = time.perf_counter()
        tracked = (len(gc.get_objects()) - tracked_before) / max(live, 1)
        t_started = time.perf_counter()
        t_start += t_started - counting
        _go.set()
        await asyncio.gather(*subs)
        t_done = time.perf_counter()
        stop.set()
    rss_samples.append(_rss())
    result = _summary(
        args, latencies, received, rss_samples, rss_before, live, t_start, t_started, t_done
    )
    result["gc_tracked_per_turn"] = round(tracked, 1)
    return result


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks._w6_child")
    p.add_argument("--store", choices=("memory", "file", "bare"), required=True)
    p.add_argument("--turns", type=int, required=True)
    p.add_argument("--tokens", type=int, required=True)
    p.add_argument("--interval", type=float, required=True)
    p.add_argument("--root", default="")
    args = p.parse_args()
    with GcWatch() as watch:
        result = anyio.run(_main, args)
    result["gc"] = watch.as_dict()
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
