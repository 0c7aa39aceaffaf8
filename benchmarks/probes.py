"""Probes behind the profiling notes of docs/benchmarks.md: each takes one workload apart.

``python -m benchmarks.probes w1``   W1 at N = 10k: floor, journal append in the loop thread,
                                     thread round trip, and the store's checkpoint save.
``python -m benchmarks.probes w3``   W3 at N = 50k: raw orjson, FileStore's read in the loop
                                     thread and through a worker thread, and ``load()``.
``python -m benchmarks.probes w4 [--freeze]``
                                     W4's event log vs ``asyncio.Queue`` after importing the
                                     peers (the heap a long-lived app has); ``--freeze`` calls
                                     ``gc.collect(); gc.freeze()`` after the imports.
``python -m benchmarks.probes w5 --events E``
                                     one W5 run with E events (attach py-spy to the
                                     ``benchmarks._w5_server`` child while it runs).

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


async def _w1() -> None:
    import anyio.to_thread

    from runtime.stores import _fileio as fio
    from runtime.stores.files import FileStore

    from ._shapes import appended_message, history

    root = Path(tempfile.mkdtemp(prefix="probe-w1-"))
    try:
        store = FileStore(root)
        await store.open()
        session = store.new_session(title="probe")
        session.messages.extend(history(10_000))
        await store.save(session)
        line = orjson.dumps(appended_message(0)) + b"\n"
        journal = root / "probe.journal"
        fd = os.open(root / "floor", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

        def append() -> None:
            fio.append_durable(journal, line, created=True)

        floor: list[float] = []
        inline: list[float] = []
        hop: list[float] = []
        hop_append: list[float] = []
        save: list[float] = []
        for i in range(300):
            t = time.perf_counter()
            os.write(fd, b"x")
            os.fsync(fd)
            floor.append(time.perf_counter() - t)
            t = time.perf_counter()
            append()
            inline.append(time.perf_counter() - t)
            t = time.perf_counter()
            await anyio.to_thread.run_sync(lambda: None)
            hop.append(time.perf_counter() - t)
            t = time.perf_counter()
            await anyio.to_thread.run_sync(append)
            hop_append.append(time.perf_counter() - t)
            session.messages.append(appended_message(i))
            t = time.perf_counter()
            await store.save(session, skip_index=True)
            save.append(time.perf_counter() - t)
        os.close(fd)
        await store.aclose()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"W1 probe, N=10k, 300 samples, median ms: floor {_ms(floor)} | append_durable in the "
        f"loop thread {_ms(inline)} | to_thread no-op {_ms(hop)} | to_thread(append_durable) "
        f"{_ms(hop_append)} | store.save(skip_index=True) {_ms(save)}"
    )


async def _w3() -> None:
    import anyio.to_thread

    from runtime.stores.files import FileStore

    from ._shapes import history

    root = Path(tempfile.mkdtemp(prefix="probe-w3-"))
    try:
        store = FileStore(root)
        await store.open()
        session = store.new_session(title="probe")
        session.messages.extend(history(50_000))
        await store.save(session)
        raw = root / "raw.json"
        raw.write_bytes(orjson.dumps({"messages": session.messages}))
        sid = session.session_id
        calls: dict[str, Callable[[], Any]] = {
            "orjson.loads(read)": lambda: orjson.loads(raw.read_bytes()),
            "FileStore._read_state_sync in the loop thread": lambda: store._read_state_sync(sid),
            "same via anyio.to_thread": lambda: anyio.to_thread.run_sync(
                store._read_state_sync, sid
            ),
            "store.load()": lambda: store.load(sid),
        }
        samples: dict[str, list[float]] = {k: [] for k in calls}
        for _ in range(10):
            for name, call in calls.items():
                gc.collect()
                t = time.perf_counter()
                result = call()
                if asyncio.iscoroutine(result):
                    result = await result
                samples[name].append(time.perf_counter() - t)
                del result
        await store.aclose()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        "W3 probe, N=50k, 10 samples, median ms: "
        + " | ".join(f"{k} {_ms(v)}" for k, v in samples.items())
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


async def _w5(events: int) -> None:
    from . import w5_sse
    from ._config import Config, Context

    config = dataclasses.replace(Config.full(), w5_events=events)
    tmp = Path(tempfile.mkdtemp(prefix="probe-w5-"))
    try:
        data = await w5_sse._measure(Context(config, tmp, {}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(orjson.dumps(data).decode())


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.probes")
    p.add_argument("probe", choices=("w1", "w3", "w4", "w5"))
    p.add_argument("--freeze", action="store_true", help="w4: gc.freeze() after the imports")
    p.add_argument("--events", type=int, default=3000, help="w5: events in the stream")
    args = p.parse_args()
    if args.probe == "w1":
        asyncio.run(_w1())
    elif args.probe == "w3":
        asyncio.run(_w3())
    elif args.probe == "w4":
        asyncio.run(_w4(args.freeze))
    else:
        asyncio.run(_w5(args.events))


if __name__ == "__main__":
    main()
