"""W5: SSE fan-out over loopback HTTP: S subscribers on one stream, E events.

The server (``_w5_server``, a child process: uvicorn + ``runtime.asgi.create_app``)
runs one turn whose agent emits E tokens in bursts; S raw HTTP/1.1 clients in this
process follow ``GET /api/streams/{id}/events``. Clients parse ``id:`` and the event's
``ts`` with a regular expression (cheap, so the client side stays off the critical
path); latency = receipt time - publish ``ts`` (one clock, one machine). Lost events
= tokens expected minus tokens received, summed over subscribers; gaps = ids skipped.
Both processes report their CPU seconds (and the server its garbage-collection time),
so a table shows which side was saturated.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import resource
import sys
import time
from array import array
from pathlib import Path
from typing import Any

import anyio

from ._config import Context
from ._labels import size_label
from ._report import Result, Table, fmt
from ._rt import runtime_missing
from ._stats import percentile

_HERE = str(Path(__file__).resolve().parent.parent)

ID = "W5"
TITLE = "W5 SSE fan-out over loopback HTTP (one stream)"

_EVENT = re.compile(rb'id: (\d+)\nevent: ([\w.]+)\ndata: [^\n]*"ts":([0-9.eE+-]+)\}\n\n')
_ID = re.compile(rb"id: (\d+)\n")
_TS = re.compile(rb'"ts":([0-9.eE+-]+)\}\n\n')
_TOKEN = b"\nevent: token\n"


class _Subscriber(asyncio.Protocol):
    """One SSE client: a raw HTTP/1.1 GET whose events are checked as bytes arrive.

    Every read is checked whole: its ids (one ``findall``) must be the next ones in
    order, each exactly once, and every event a token; then the tokens are counted and
    the latency (receipt time minus the event's publish ``ts``) taken for each token
    whose seq is a multiple of ``stride``, all with C-level passes over the bytes, so
    the load generator's CPU per event stays small beside the server's. A read that is
    anything else (the stream's first or last events, a gap, a repeat) goes through the
    event-by-event parse, which counts the gap and records the same latencies.
    """

    def __init__(self, request: bytes, stride: int, done: asyncio.Future[None]) -> None:
        self.request = request
        self.stride = stride
        self.buf = b""
        self.last_seq = 0
        self.gaps = 0
        self.tokens = 0
        self.latencies = array("d")
        self.ready = asyncio.get_running_loop().create_future()
        self.done = done
        self.ended = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buf + data if self.buf else data
        stop = buf.rfind(b"\n\n") + 2
        if stop < 2:
            self.buf = buf
            return
        self.buf = buf[stop:]
        ids = _ID.findall(buf, 0, stop)
        n = len(ids)
        first = self.last_seq + 1
        if (
            n
            and buf.count(_TOKEN, 0, stop) == n
            and list(map(int, ids)) == list(range(first, first + n))
        ):
            stamps = _TS.findall(buf, 0, stop)
            if len(stamps) == n:
                self.last_seq = first + n - 1
                self.tokens += n
                sampled = stamps[(-first) % self.stride :: self.stride]
                self.latencies.extend([now - float(ts) for ts in sampled])
                return
        self._parse(buf, stop, now)

    def _parse(self, buf: bytes, stop: int, now: float) -> None:
        """The complete events in ``buf[:stop]``, one by one."""
        for m in _EVENT.finditer(buf, 0, stop):
            seq = int(m.group(1))
            if seq != self.last_seq + 1:
                self.gaps += max(0, seq - self.last_seq - 1)
            self.last_seq = max(self.last_seq, seq)
            kind = m.group(2)
            if kind == b"token":
                self.tokens += 1
                if seq % self.stride == 0:
                    self.latencies.append(now - float(m.group(3)))
            elif kind == b"stream.started" and not self.ready.done():
                self.ready.set_result(None)
            elif kind == b"stream.end":
                self.ended = True
                if self.transport is not None:
                    self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            peer = self.transport.get_extra_info("peername") if self.transport else None
            port = peer[1] if peer else "?"
            self.ready.set_exception(
                ConnectionError(
                    f"SSE connection to port {port} lost before stream.started: {exc}; "
                    f"unparsed bytes {self.buf[:300]!r}"
                )
            )
        if not self.done.done():
            self.done.set_result(None)


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


async def _measure(ctx: Context, *, gc_threshold: int | None = None) -> dict[str, Any]:
    """One W5 run; ``gc_threshold`` is passed to the server (probes only)."""
    cfg = ctx.config
    subs_n, events = cfg.w5_subscribers, cfg.w5_events
    _raise_nofile(subs_n + 256)
    env = dict(os.environ)
    env["PYTHONPATH"] = _HERE + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [
        sys.executable,
        "-m",
        "benchmarks._w5_server",
        "--events",
        str(events),
        "--burst",
        str(cfg.w5_burst),
        "--interval",
        str(cfg.w5_burst_interval),
    ]
    if gc_threshold is not None:
        cmd += ["--gc-threshold", str(gc_threshold)]
    go = ctx.tmp / "w5-go"
    proc = await anyio.open_process(cmd, env=env)
    try:
        assert proc.stdout is not None
        line = b""
        with anyio.fail_after(60):
            while not line.endswith(b"\n"):
                line += await proc.stdout.receive(1)
        port = int(line.split()[1])
        import httpx

        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            r = await client.post("/api/sessions", json={"title": "w5"})
            r.raise_for_status()
            session_id = r.json()["session_id"]
            r = await client.post(f"/api/sessions/{session_id}/turns", json={"message": str(go)})
            r.raise_for_status()
            stream_id = r.json()["stream_id"]
        request = (
            f"GET /api/streams/{stream_id}/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Accept: text/event-stream\r\nConnection: close\r\n\r\n"
        ).encode()
        loop = asyncio.get_running_loop()
        stride = max(1, (subs_n * events) // 1_000_000)
        subs: list[_Subscriber] = []
        t_connect = time.perf_counter()
        for lo in range(0, subs_n, 100):
            batch = []
            for _ in range(lo, min(lo + 100, subs_n)):
                sub = _Subscriber(request, stride, loop.create_future())
                batch.append(sub)
                # the factory runs before create_connection returns, so sub is this one
                await loop.create_connection(lambda: sub, "127.0.0.1", port)  # noqa: B023
            subs += batch
            await asyncio.gather(*(s.ready for s in batch))
        connect_s = time.perf_counter() - t_connect
        go.write_bytes(b"go")
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        nominal = (events / cfg.w5_burst) * cfg.w5_burst_interval
        timeout = 60 + 5 * nominal
        try:
            with anyio.move_on_after(timeout):
                await asyncio.gather(*(s.done for s in subs))
        finally:
            for s in subs:
                if s.transport is not None:
                    s.transport.close()
        elapsed = time.perf_counter() - t0
        client_cpu = time.process_time() - cpu0
        go.with_name(go.name + ".stop").write_bytes(b"stop")  # the server reports, exits
        with anyio.move_on_after(20):
            line += await _read_to_end(proc.stdout)
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.terminate()
            with anyio.move_on_after(10):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await proc.aclose()
    server = _server_stats(line)
    lat = [x for s in subs for x in s.latencies]
    received = sum(s.tokens for s in subs)
    return {
        "subscribers": subs_n,
        "events": events,
        "burst": cfg.w5_burst,
        "burst_interval_s": cfg.w5_burst_interval,
        "nominal_s": nominal,
        "connect_s": round(connect_s, 3),
        "stream_s": round(elapsed, 3),
        "client_cpu_s": round(client_cpu, 3),
        "server_cpu_s": server.get("cpu_s"),
        "server_gc_ms": server.get("gc", {}).get("total_ms"),
        "server_gc": server.get("gc"),
        "burst_late_p50_ms": server.get("burst_late_p50_ms"),
        "burst_late_max_ms": server.get("burst_late_max_ms"),
        "server_gc_threshold": server.get("gc_threshold"),
        "server_objects_per_subscriber": _per_subscriber(server, subs_n),
        "server_burst_objects_per_subscriber": (
            round(server["burst_new_objects"] / subs_n, 2)
            if "burst_new_objects" in server and subs_n
            else None
        ),
        "server_burst_new_types": server.get("burst_new_types"),
        "lost": subs_n * events - received,
        "gaps": sum(s.gaps for s in subs),
        "ended": sum(1 for s in subs if s.ended),
        "latency_samples": len(lat),
        "latency_stride": stride,
        "p50_ms": percentile(lat, 50) * 1000 if lat else None,
        "p99_ms": percentile(lat, 99) * 1000 if lat else None,
        "max_ms": max(lat) * 1000 if lat else None,
    }


async def _read_to_end(stream: Any) -> bytes:
    """Everything the server still writes to stdout until it exits (its ``stats`` line)."""
    out = b""
    try:
        while True:
            out += await stream.receive()
    except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
        return out


def _server_stats(output: bytes) -> dict[str, Any]:
    """The ``stats <json>`` line the server prints on shutdown (``{}`` if it printed none)."""
    for raw in output.splitlines():
        if raw.startswith(b"stats "):
            stats: dict[str, Any] = json.loads(raw[6:])
            return stats
    return {}


def _per_subscriber(server: dict[str, Any], subscribers: int) -> float | None:
    """GC-tracked objects the server gained per subscriber between the turn's start
    (no subscriber yet) and the go signal (all connected), or ``None`` if not reported."""
    before, connected = server.get("gc_objects_before"), server.get("gc_objects_connected")
    if before is None or connected is None or subscribers < 1:
        return None
    return round((connected - before) / subscribers, 1)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: blocked with sys.modules[name] = None
        return False


async def run(ctx: Context) -> Result:
    """Run W5 once and tabulate."""
    cfg = ctx.config
    res = Result(ID, TITLE, "ms")
    table = Table(
        f"{TITLE}: {size_label(cfg.w5_subscribers)} subscribers, "
        f"{size_label(cfg.w5_events)} events",
        [
            "system",
            "lost events",
            "p50 ms",
            "p99 ms",
            "max ms",
            "stream s",
            "nominal s",
            "server CPU s",
            "server GC s",
            "client CPU s",
        ],
    )
    reason = runtime_missing("asgi") or runtime_missing("runtime")
    if reason is None:
        missing = [m for m in ("uvicorn", "httpx") if not _importable(m)]
        if missing:
            reason = f"not installed ({', '.join(missing)}: install the bench extra)"
    if reason is not None:
        res.notes["runtime_sse"] = reason
        res.systems["runtime_sse"] = {"lost": None, "p50_ms": None, "p99_ms": None}
        table.add("runtime asgi + uvicorn", reason.split(" (")[0])
        res.tables.append(table)
        return res
    data = await _measure(ctx)
    res.systems["runtime_sse"] = {
        "lost": data["lost"],
        "p50_ms": data["p50_ms"],
        "p99_ms": data["p99_ms"],
        "max_ms": data["max_ms"],
    }
    res.extra.update(data)
    table.add(
        "runtime asgi + uvicorn (MemoryStore)",
        str(data["lost"]),
        fmt(data["p50_ms"]),
        fmt(data["p99_ms"]),
        fmt(data["max_ms"]),
        fmt(data["stream_s"]),
        fmt(data["nominal_s"]),
        fmt(data["server_cpu_s"]),
        fmt(None if data["server_gc_ms"] is None else data["server_gc_ms"] / 1000),
        fmt(data["client_cpu_s"]),
    )
    table.footnotes.append(
        f"the agent emits {cfg.w5_burst} tokens every {cfg.w5_burst_interval} s on a fixed "
        f"schedule ({cfg.w5_burst / cfg.w5_burst_interval:g} events/s); server in a child "
        f"process, clients in this one (raw asyncio protocol, regex parsing); latency = "
        f"receipt - publish ts over every {data['latency_stride']}th event of every subscriber"
    )
    table.footnotes.append(
        "server CPU s / GC s: CPU time of the server process from the first token to its "
        "shutdown, and the cyclic GC's part of it; client CPU s: this process over the same "
        "stream; a process whose CPU s nears 'stream s' is saturated. Bursts started "
        f"{fmt(data['burst_late_p50_ms'])} ms late (median), {fmt(data['burst_late_max_ms'])} "
        "ms at most (the agent waits on a loop busy with the fan-out)"
    )
    gc_info = data["server_gc"] or {}
    table.footnotes.append(
        f"server GC: {gc_info.get('collections')} collections (generations 0, 1, 2), "
        f"longest pause {fmt(gc_info.get('max_pause_ms'))} ms; "
        f"{fmt(data['server_objects_per_subscriber'])} GC-tracked objects per connected "
        "subscriber (the server's count before the first connection and with all connected)"
    )
    res.tables.append(table)
    return res
