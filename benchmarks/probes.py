"""Probes behind the profiling notes of docs/benchmarks.md: each takes one workload apart.

``python -m benchmarks.probes w1``   W1 at N = 100 and 50k, interleaved: floor, the journal
                                     append in the loop thread, both thread round trips
                                     (anyio's pool, the store's I/O thread), the checkpoint
                                     save, where one save's time goes, and the context
                                     switches (thread wake-ups) of each per call.
``python -m benchmarks.probes w3``   W3 at N = 100, 1k, 50k: raw orjson (result freed outside
                                     and inside the timer), FileStore's read in the loop
                                     thread, the I/O thread's round trip after a
                                     ``gc.collect()``, and ``load()``.
``python -m benchmarks.probes w4 [--freeze]``
                                     W4's event log vs ``asyncio.Queue`` after importing the
                                     peers (the heap a long-lived app has); ``--freeze`` calls
                                     ``gc.collect(); gc.freeze()`` after the imports.
``python -m benchmarks.probes w5 [--events E] [--subscribers S] [--gc-threshold N]``
                                     one W5 run with E events (default 3,000) to S
                                     subscribers (default 1,000); prints its JSON, with the
                                     server's CPU and GC seconds and the client's CPU;
                                     ``--gc-threshold`` sets the server's ``gc.set_threshold``.
                                     To profile, attach ``py-spy record --pid`` to the
                                     ``benchmarks._w5_server`` child and to this process.
``python -m benchmarks.probes wpg [--reps R] [--n N] [--profile]``
                                     WPG W1 at N (default 1k): R (default 1,000) PostgresStore
                                     checkpoint saves interleaved in batches of 50 with R
                                     bare one-row INSERT + COMMITs on a held connection
                                     (``RUNTIME_BENCH_POSTGRES_DSN``, else
                                     ``RUNTIME_TEST_POSTGRES_DSN``; a database of its own);
                                     client CPU per op (``time.process_time``), wall
                                     medians, and, when the server has ``pg_stat_statements``
                                     loaded, each side's statements, server planning +
                                     execution time (planning apart), shared buffers
                                     touched and WAL bytes per op; ``--profile``: a cProfile of the
                                     saves' client side (top 25 by own time).

Each prints medians; none is part of ``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson


def _ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def _switches() -> int:
    """Context switches of this process so far (every thread; ``getrusage``)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_nvcsw + usage.ru_nivcsw


def _line(title: str, samples: dict[str, list[float]]) -> str:
    return title + " | ".join(f"{k} {_ms(v)}" for k, v in samples.items())


async def _w1() -> None:
    import anyio.to_thread

    from runtime.stores import _fileio as fio
    from runtime.stores import _iothread
    from runtime.stores.files import FileStore

    from ._shapes import appended_message, history

    root = Path(tempfile.mkdtemp(prefix="probe-w1-"))
    try:
        stores: dict[int, tuple[Any, Any]] = {}
        for n in (100, 50_000):
            store = FileStore(root / str(n))
            await store.open()
            session = store.new_session(title="probe")
            session.messages.extend(history(n))
            await store.save(session)
            stores[n] = (store, session)
        line = orjson.dumps(appended_message(0)) + b"\n"
        fd = os.open(root / "floor", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        io = _iothread.IOThread("probe I/O")
        kept = fio.AppendFds()

        def floor() -> None:
            os.write(fd, b"x")
            os.fsync(fd)

        def open_append() -> None:
            fio.append_durable(root / "j1", line, created=True)

        def kept_append() -> None:
            kept.append_durable("j2", root / "j2", line)

        samples: dict[str, list[float]] = {
            k: []
            for k in (
                "floor",
                "open+append+fdatasync+close in the loop thread",
                "append+fdatasync on a kept fd in the loop thread",
                "anyio.to_thread no-op",
                "IOThread no-op",
                "IOThread(kept-fd append)",
                "save N=100",
                "save N=50k",
            )
        }
        calls: list[tuple[str, Callable[[], Any]]] = [
            ("floor", floor),
            ("open+append+fdatasync+close in the loop thread", open_append),
            ("append+fdatasync on a kept fd in the loop thread", kept_append),
            ("anyio.to_thread no-op", lambda: anyio.to_thread.run_sync(lambda: None)),
            ("IOThread no-op", lambda: io.run(lambda: None)),
            ("IOThread(kept-fd append)", lambda: io.run(kept_append)),
        ]
        # where one save's time goes: loop-side work before the hand-off, waking the I/O
        # thread, the file work there, waking the loop, loop-side work after
        split: dict[str, list[float]] = {
            k: [] for k in ("before", "wake I/O", "file work", "wake loop", "after")
        }
        marks: dict[str, float] = {}
        real_run = _iothread.IOThread.run

        async def traced_run(self: Any, fn: Callable[..., Any], *args: Any) -> Any:
            marks["submit"] = time.perf_counter()

            def timed(*a: Any) -> Any:
                marks["start"] = time.perf_counter()
                try:
                    return fn(*a)
                finally:
                    marks["end"] = time.perf_counter()

            result = await real_run(self, timed, *args)
            marks["resumed"] = time.perf_counter()
            return result

        # context switches (voluntary + involuntary, every thread) per call: each thread
        # wake-up of a hop is one, whatever the machine's load makes it cost
        switches = dict.fromkeys(samples, 0)
        for i in range(300):
            for name, call in calls:
                before = _switches()
                t = time.perf_counter()
                result = call()
                if asyncio.iscoroutine(result):
                    await result
                samples[name].append(time.perf_counter() - t)
                switches[name] += _switches() - before
            for n, (store, session) in stores.items():
                session.messages.append(appended_message(i))
                traced = n == 100 and i % 2 == 1
                _iothread.IOThread.run = traced_run if traced else real_run  # type: ignore[method-assign]
                before = _switches()
                t = time.perf_counter()
                await store.save(session, skip_index=True)
                t_end = time.perf_counter()
                _iothread.IOThread.run = real_run  # type: ignore[method-assign]
                key = "save N=100" if n == 100 else "save N=50k"
                samples[key].append(t_end - t)
                switches[key] += _switches() - before
                if traced:
                    split["before"].append(marks["submit"] - t)
                    split["wake I/O"].append(marks["start"] - marks["submit"])
                    split["file work"].append(marks["end"] - marks["start"])
                    split["wake loop"].append(marks["resumed"] - marks["end"])
                    split["after"].append(t_end - marks["resumed"])
        os.close(fd)
        io.close()
        kept.close()
        for store, _ in stores.values():
            await store.aclose()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(_line("W1 probe, 300 samples each, median ms: ", samples))
    print(
        "context switches per call: "
        + " | ".join(f"{k} {v / len(samples[k]):.2f}" for k, v in switches.items())
    )
    print(_line("one save at N=100 (150 traced), median ms: ", split))
    f = statistics.median(samples["floor"])
    print(
        "save / floor: N=100 "
        f"{statistics.median(samples['save N=100']) / f:.2f}x, N=50k "
        f"{statistics.median(samples['save N=50k']) / f:.2f}x"
    )


async def _w3() -> None:
    root = Path(tempfile.mkdtemp(prefix="probe-w3-"))
    try:
        for n, reps in ((100, 200), (1_000, 100), (50_000, 10)):
            await _w3_at(root / str(n), n, reps)
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def _w3_at(root: Path, n: int, reps: int) -> None:
    from runtime.stores.files import FileStore

    from ._shapes import appended_message, history

    store = FileStore(root)
    await store.open()
    session = store.new_session(title="probe")
    session.messages.extend(history(n))
    await store.save(session)
    for i in range(32):  # the journal W1 leaves behind
        session.messages.append(appended_message(i))
        await store.save(session, skip_index=True)
    await store.aclose()
    raw = root / "raw.json"
    raw.write_bytes(orjson.dumps({"messages": session.messages}))
    store = FileStore(root)  # a fresh instance, as in W3
    await store.open()
    sid = session.session_id

    def loads_free_outside() -> Any:
        return orjson.loads(raw.read_bytes())

    def loads_free_inside() -> int:
        return len(orjson.loads(raw.read_bytes())["messages"])

    async def load() -> int:
        return len((await store.load(sid)).messages)

    calls: dict[str, Callable[[], Any]] = {
        "orjson.loads(read), freed after the timer": loads_free_outside,
        "orjson.loads(read), freed in the timer": loads_free_inside,
        # what load() runs on the I/O thread (known to the store after the first call, as
        # in W3, whose reopen loads the session once)
        "FileStore._read_session_sync in the loop thread": lambda: store._read_session_sync(sid),
        "IOThread no-op": lambda: store._io.run(lambda: None),
        "store.load() (freed in the timer)": load,
    }
    samples: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(reps):
        for name, call in calls.items():
            gc.collect()
            t = time.perf_counter()
            result = call()
            if asyncio.iscoroutine(result):
                result = await result
            samples[name].append(time.perf_counter() - t)
            del result
    await store.aclose()
    base = statistics.median(samples["orjson.loads(read), freed in the timer"])
    ratio = statistics.median(samples["store.load() (freed in the timer)"]) / base
    print(
        _line(f"W3 probe, N={n}, {reps} samples, median ms: ", samples)
        + f" | load / orjson (both freed in the timer) {ratio:.2f}x"
    )


async def _w4(freeze: bool) -> None:
    import agents  # noqa: F401 - the heap of an app that imported the peers
    import langgraph.graph  # noqa: F401

    from . import w4_events

    if freeze:
        gc.collect()
        gc.freeze()
    log = [await w4_events._runtime_log(200_000, 100) for _ in range(5)]
    queue = [await w4_events._asyncio_queue(200_000, 100) for _ in range(5)]
    print(
        f"W4 probe (gc.freeze() after imports: {freeze}), 200k events, median of 5: runtime "
        f"event log {statistics.median(log):,.0f}/s, asyncio.Queue "
        f"{statistics.median(queue):,.0f}/s"
    )


async def _w5(events: int, subscribers: int, gc_threshold: int | None) -> None:
    from . import w5_sse
    from ._config import Config, Context

    config = dataclasses.replace(Config.full(), w5_events=events, w5_subscribers=subscribers)
    tmp = Path(tempfile.mkdtemp(prefix="probe-w5-"))
    try:
        data = await w5_sse._measure(Context(config, tmp, {}), gc_threshold=gc_threshold)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(orjson.dumps(data).decode())


async def _wpg(reps: int, profile: bool, n: int = 1000) -> None:
    import cProfile
    import pstats

    import asyncpg

    from runtime.stores.abc import Lease, SaveDelta
    from runtime.stores.postgres import PostgresStore

    from ._shapes import appended_message, history
    from .wpg_postgres import _Databases, _with_db, dsn

    base = dsn()
    if base is None:
        raise SystemExit("set RUNTIME_BENCH_POSTGRES_DSN or RUNTIME_TEST_POSTGRES_DSN")
    dbs = _Databases(base)
    url = _with_db(base, await dbs.new())
    store = PostgresStore(url, max_size=2)
    floor = await asyncpg.connect(url)
    try:
        await store.open()
        session = store.new_session(title="probe")
        session.messages.extend(history(n))
        await store.save(session)
        # a running turn's lease, as the runner checkpoints (ttl: Runtime's default)
        lease = Lease("probe", "t" * 32, 30.0)
        await store.save(session, lease=lease, lease_mode="claim")
        unfenced = store.new_session(title="probe")
        unfenced.messages.extend(history(n))
        await store.save(unfenced)
        await floor.execute("CREATE TABLE floor (id serial PRIMARY KEY, body text NOT NULL)")
        body = orjson.dumps(appended_message(0)).decode()
        stats = "pg_stat_statements" in await floor.fetchval(
            "SELECT current_setting('shared_preload_libraries')"
        )
        if stats:
            await floor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        sides = ("checkpoint save", "bare INSERT + COMMIT", "unfenced checkpoint")
        cpu: dict[str, list[float]] = {k: [] for k in sides}
        wall: dict[str, list[float]] = {k: [] for k in sides}
        profiler = cProfile.Profile() if profile else None
        # built before the timers, like the floor's body: the probe times the save
        appended = iter([appended_message(i) for i in range(2 * reps + 40)])

        async def save() -> None:
            base_count = len(session.messages)
            session.messages.append(next(appended))
            await store.save(
                session, skip_index=True, delta=SaveDelta.appended(base_count), lease=lease
            )

        async def save_unfenced() -> None:
            # without a lease (an adapter's or a tool's save): the row path every time
            base_count = len(unfenced.messages)
            unfenced.messages.append(next(appended))
            await store.save(unfenced, skip_index=True, delta=SaveDelta.appended(base_count))

        async def insert() -> None:
            await floor.execute("INSERT INTO floor (body) VALUES ($1)", body)

        calls = (save, insert, save_unfenced)
        for call in calls:  # warm up: prepared statements, the kept connection
            for _ in range(20):
                await call()
        if stats:
            await floor.execute("SELECT pg_stat_statements_reset()")
        batch = 50
        for _ in range(reps // batch):
            for name, call in zip(sides, calls, strict=True):
                if profiler is not None and call is save:
                    profiler.enable()
                c, t = time.process_time(), time.perf_counter()
                for _ in range(batch):
                    await call()
                cpu[name].append((time.process_time() - c) / batch)
                wall[name].append((time.perf_counter() - t) / batch)
                if profiler is not None:
                    profiler.disable()
        print(
            f"WPG probe, N={n}, {reps} of each in batches of {batch}, load {os.getloadavg()[0]:.1f}"
        )
        for name in sides:
            print(
                f"  {name}: client CPU {statistics.median(cpu[name]) * 1e6:.0f} us/op, "
                f"wall {statistics.median(wall[name]) * 1e3:.3f} ms/op (medians over batches)"
            )
        for side in (sides[0], sides[2]):
            ratio = [a / b for a, b in zip(cpu[side], cpu[sides[1]], strict=True)]
            walls = [a / b for a, b in zip(wall[side], wall[sides[1]], strict=True)]
            print(
                f"  {side} / INSERT: client CPU {statistics.median(ratio):.2f}x,"
                f" wall {statistics.median(walls):.2f}x (medians of adjacent batches)"
            )
        if stats:
            rows = await floor.fetch(
                "SELECT calls, total_exec_time + total_plan_time, total_plan_time, wal_bytes,"
                " shared_blks_hit + shared_blks_read, query"
                " FROM pg_stat_statements"
                " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND query NOT LIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC"
            )
            print(f"  server, per statement, planning + execution ({reps} of each side):")
            for calls, total, plan, wal, blocks, query in rows:
                print(
                    f"    {calls:6d} calls {total * 1000 / calls:7.1f} us "
                    f"(plan {plan * 1000 / calls:5.1f}) {blocks / calls:5.1f} blocks "
                    f"{int(wal) / calls:7.0f} WAL B  {' '.join(query.split())[:90]}"
                )
        else:
            print("  (no pg_stat_statements on this server: no per-statement figures)")
        if profiler is not None:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    finally:
        await floor.close()
        await store.aclose()
        await dbs.drop_all()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.probes")
    p.add_argument("probe", choices=("w1", "w3", "w4", "w5", "wpg"))
    p.add_argument("--freeze", action="store_true", help="w4: gc.freeze() after the imports")
    p.add_argument("--events", type=int, default=3000, help="w5: events in the stream")
    p.add_argument("--subscribers", type=int, default=1000, help="w5: SSE subscribers")
    p.add_argument(
        "--gc-threshold", type=int, default=None, help="w5: gc.set_threshold(N) in the server"
    )
    p.add_argument("--reps", type=int, default=1000, help="wpg: saves and INSERTs each")
    p.add_argument("--profile", action="store_true", help="wpg: cProfile the saves")
    p.add_argument("--n", type=int, default=1000, help="wpg: messages in the session")
    args = p.parse_args()
    if args.probe == "w1":
        asyncio.run(_w1())
    elif args.probe == "w3":
        asyncio.run(_w3())
    elif args.probe == "wpg":
        asyncio.run(_wpg(args.reps, args.profile, args.n))
    elif args.probe == "w4":
        asyncio.run(_w4(args.freeze))
    else:
        asyncio.run(_w5(args.events, args.subscribers, args.gc_threshold))


if __name__ == "__main__":
    main()
