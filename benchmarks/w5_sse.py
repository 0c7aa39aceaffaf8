"""W5: SSE fan-out over loopback HTTP: S subscribers on one stream, E events.

The server (``_w5_server``, a child process: uvicorn + ``runtime.asgi.create_app`` on
the stock asyncio loop) runs one turn whose agent emits E tokens in bursts; S raw
HTTP/1.1 clients in another child, the load generator (:mod:`benchmarks._sse_clients`:
uvloop when installed, each read checked with C-level passes, so that it takes as
little of the machine's CPU from the server as it can), follow ``GET
/api/streams/{id}/events``; latency = receipt time - publish ``ts`` (one clock, one
machine). Lost events = tokens expected minus tokens received, summed over subscribers;
gaps = ids skipped. Both processes report their CPU seconds (and the server its
garbage-collection time), so a table shows which side was saturated.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio

from ._config import Context
from ._labels import size_label
from ._report import Result, Table, fmt
from ._rt import runtime_missing

_HERE = str(Path(__file__).resolve().parent.parent)

ID = "W5"
TITLE = "W5 SSE fan-out over loopback HTTP (one stream)"


def child_env() -> dict[str, str]:
    """This process's environment with this checkout first on ``PYTHONPATH``, for the
    benchmark's child processes (``python -m benchmarks._…``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = _HERE + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


async def run_clients(
    ports: list[int], stream_id: str, subscribers: int, events: int, go: Path, follow_s: float
) -> dict[str, Any]:
    """Run the load generator (:mod:`benchmarks._sse_clients`, its own process) against
    ``ports`` (it follows the stream for ``follow_s`` seconds at most) and return its
    result.

    :raises RuntimeError: if it printed no result (its stderr is in the message).
    """
    env = child_env()
    cmd = [sys.executable, "-m", "benchmarks._sse_clients", "--ports"]
    cmd += [",".join(map(str, ports)), "--stream-id", stream_id]
    cmd += ["--subscribers", str(subscribers), "--events", str(events)]
    cmd += ["--go", str(go), "--timeout", str(follow_s)]
    done = await anyio.run_process(cmd, env=env, check=False)
    for raw in done.stdout.splitlines():
        if raw.startswith(b"result "):
            result: dict[str, Any] = json.loads(raw[7:])
            return result
    raise RuntimeError(
        f"the SSE load generator exited {done.returncode} without a result: "
        f"{done.stderr.decode(errors='replace')[-2000:]}"
    )


async def _measure(ctx: Context, *, gc_threshold: int | None = None) -> dict[str, Any]:
    """One W5 run; ``gc_threshold`` is passed to the server (probes only)."""
    cfg = ctx.config
    subs_n, events = cfg.w5_subscribers, cfg.w5_events
    env = child_env()
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
        nominal = (events / cfg.w5_burst) * cfg.w5_burst_interval
        clients = await run_clients([port], stream_id, subs_n, events, go, 60 + 5 * nominal)
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
    group = clients["ports"][str(port)]
    return {
        "subscribers": subs_n,
        "events": events,
        "burst": cfg.w5_burst,
        "burst_interval_s": cfg.w5_burst_interval,
        "nominal_s": nominal,
        "connect_s": clients["connect_s"],
        "stream_s": clients["stream_s"],
        "client_cpu_s": clients["client_cpu_s"],
        "client_loop": clients["loop"],
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
        "lost": subs_n * events - group["tokens"],
        "gaps": group["gaps"],
        "ended": group["ended"],
        "latency_samples": group["latency_samples"],
        "latency_stride": clients["latency_stride"],
        "p50_ms": group["p50_ms"],
        "p99_ms": group["p99_ms"],
        "max_ms": group["max_ms"],
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
        f"process on the stock asyncio loop, the clients in another (raw HTTP/1.1, "
        f"{data['client_loop']} loop); latency = receipt - publish ts over every "
        f"{data['latency_stride']}th event of every subscriber"
    )
    table.footnotes.append(
        "server CPU s / GC s: CPU time of the server process from the first token to its "
        "shutdown, and the cyclic GC's part of it; client CPU s: the load generator over "
        "the same stream; a process whose CPU s nears 'stream s' is saturated. Bursts started "
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
