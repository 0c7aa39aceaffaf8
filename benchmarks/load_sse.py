"""SSE load on loopback: ``python -m benchmarks.load_sse [--clients 1000] [--seconds 60]``.

A real server (``python -m runtime serve`` with :mod:`benchmarks._load_agent`, a
FileStore in a temporary directory) runs turns back to back in ``--sessions`` groups
for ``--seconds`` (each turn on a new session, so no history grows during the run,
unless ``--same-sessions``); ``--clients`` SSE clients (raw sockets, HTTP/1.1) follow
them, spread evenly over the groups, each following every turn of its group:

* readers read everything as it comes;
* pausers stop reading for ``--pause`` seconds every ``--pause-every`` events;
* non-readers open the stream with a small receive buffer and never read until the
  turn is over (then they read what the server sent before it cut them off).

A reader or pauser cut off by the server resumes with ``Last-Event-ID`` (that is how
a browser's EventSource behaves). Reported: events lost by readers and pausers (gaps
in the seqs they end up with; must be 0), resumes, how non-readers ended (cut off with
a "lagged" ending, cut off without one, or held), the agent's lateness against its
token schedule and the turn durations — each beside a baseline phase in the same run
with the same readers and pausers but no non-readers (the ratio says whether
non-readers slow the agent) — and the server's RSS (``VmHWM`` peak, ``VmRSS`` every
10 s). Prints one JSON document; exits 1 if a reader lost an
event or a non-reader was held past the end of its turn plus ``--grace`` seconds.

Not a test: figures depend on the machine; docs/security.md quotes a run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


# -- one SSE connection over a raw socket -------------------------------------------------


def _request(port: int, path: str, last_id: int | None) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Accept: text/event-stream",
    ]
    if last_id is not None:
        lines.append(f"Last-Event-ID: {last_id}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class _SSEParser:
    """HTTP/1.1 response (chunked or not) into SSE events ``(id, event, data)``."""

    def __init__(self) -> None:
        self.raw = b""
        self.headers_done = False
        self.status = 0
        self.chunked = False
        self.body = b""
        self.events: list[tuple[int | None, str, str]] = []

    def feed(self, data: bytes) -> None:
        self.raw += data
        if not self.headers_done:
            head, sep, rest = self.raw.partition(b"\r\n\r\n")
            if not sep:
                return
            self.headers_done = True
            self.status = int(head.split(b" ", 2)[1])
            self.chunked = b"transfer-encoding: chunked" in head.lower()
            self.raw = rest
        if self.chunked:
            while True:
                size_line, sep, rest = self.raw.partition(b"\r\n")
                if not sep:
                    break
                size = int(size_line.split(b";")[0], 16)
                if len(rest) < size + 2:
                    break
                self.body += rest[:size]
                self.raw = rest[size + 2 :]
        else:
            self.body += self.raw
            self.raw = b""
        *blocks, self.body = self.body.replace(b"\r\n", b"\n").split(b"\n\n")
        for block in blocks:
            seq: int | None = None
            event, data = "message", ""
            for line in block.decode(errors="replace").split("\n"):
                if line.startswith("id:"):
                    with contextlib.suppress(ValueError):
                        seq = int(line[3:].strip())
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
            if seq is not None or event != "message" or data:
                self.events.append((seq, event, data))


@dataclass
class Outcome:
    """What one client got from one stream."""

    kind: str
    seqs: set[int] = field(default_factory=set)
    resumes: int = 0
    ended: bool = False  # saw stream.end
    lagged: bool = False  # saw a "lagged" ending
    cut_off: bool = False  # the server closed the connection before stream.end
    held: bool = False  # a non-reader still open after the turn + grace
    last_seq: int = 0
    finished_at: float | None = None  # when stream.end arrived (monotonic seconds)


async def _connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


def _absorb(out: Outcome, parser: _SSEParser) -> None:
    for seq, event, data in parser.events:
        if seq is not None:
            out.seqs.add(seq)
            out.last_seq = max(out.last_seq, seq)
        if event == "stream.end":
            out.ended = True
            out.finished_at = time.monotonic()
        if "lag" in event or "lagged" in data:
            out.lagged = True
    parser.events.clear()


async def follow(port: int, stream_id: str, kind: str, args: argparse.Namespace) -> Outcome:
    """A reader or a pauser: follow the stream to ``stream.end``, resuming after a cut."""
    loop = asyncio.get_running_loop()
    out = Outcome(kind)
    last_id: int | None = None
    while not out.ended and out.resumes < 50:
        sock = await _connect(port)
        try:
            await loop.sock_sendall(
                sock, _request(port, f"/api/streams/{stream_id}/events", last_id)
            )
            parser = _SSEParser()
            since_pause = 0
            while not out.ended:
                data = await loop.sock_recv(sock, 65536)
                if not data:
                    break
                parser.feed(data)
                since_pause += len(parser.events)
                _absorb(out, parser)
                if parser.status == 204:
                    out.ended = True
                if kind == "pauser" and since_pause >= args.pause_every:
                    since_pause = 0
                    await asyncio.sleep(args.pause)
        except OSError:
            pass
        finally:
            sock.close()
        if not out.ended:
            out.cut_off = True
            out.resumes += 1
            last_id = out.last_seq
            await asyncio.sleep(0.05)
    return out


async def never_read(port: int, stream_id: str, turn_over: asyncio.Event, grace: float) -> Outcome:
    """A non-reader: a 4 KiB receive buffer, nothing read until the turn is over plus
    ``grace`` seconds; then whatever the server sent, and whether it closed."""
    loop = asyncio.get_running_loop()
    out = Outcome("non-reader")
    sock = await _connect(port, rcvbuf=4096)
    try:
        await loop.sock_sendall(sock, _request(port, f"/api/streams/{stream_id}/events", None))
        await turn_over.wait()
        await asyncio.sleep(grace)
        parser = _SSEParser()
        while True:
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 2.0)
            except TimeoutError:
                out.held = not out.ended  # still open and silent: the server holds it
                break
            if not data:
                out.cut_off = not out.ended
                break
            parser.feed(data)
            _absorb(out, parser)
    except OSError:
        out.cut_off = True
    finally:
        sock.close()
    return out


# -- the server and the driver ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _vm(pid: int, key: str) -> int:
    """``VmHWM`` / ``VmRSS`` of a process, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


async def _http(port: int, method: str, path: str, body: dict[str, Any] | None) -> Any:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    payload = json.dumps(body).encode() if body is not None else b""
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode()
        + payload
    )
    raw = await reader.read()
    writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if status >= 300:
        raise RuntimeError(f"{method} {path}: {raw[:300]!r}")
    return json.loads(rest) if rest else None


async def _sample_rss(pid: int, out: list[float]) -> None:
    """``VmRSS`` of ``pid`` every second, MiB."""
    while True:
        out.append(round(_vm(pid, "VmRSS") / 2**20, 1))
        await asyncio.sleep(1.0)


@dataclass
class Phase:
    name: str
    outcomes: list[Outcome] = field(default_factory=list)
    turn_seconds: list[float] = field(default_factory=list)
    lag_ms: list[int] = field(default_factory=list)
    turns: int = 0
    events: int = 0


async def _session_loop(
    port: int,
    sid: str,
    kinds: list[str],
    deadline: float,
    args: argparse.Namespace,
    phase: Phase,
    size: int,
) -> None:
    message = json.dumps({"tokens": args.tokens, "bytes": size, "interval": args.interval})
    n = 0
    while time.monotonic() < deadline:
        if n and args.fresh_sessions:  # a turn's cost independent of the run's length
            new = await _http(port, "POST", "/api/sessions", {"title": f"{sid} {n}"})
            sid = new["session_id"]
        n += 1
        started = time.monotonic()
        turn = await _http(port, "POST", f"/api/sessions/{sid}/turns", {"message": message})
        stream = turn["stream_id"]
        over = asyncio.Event()
        followers = [
            asyncio.create_task(follow(port, stream, k, args)) for k in kinds if k != "non-reader"
        ]
        silent = [
            asyncio.create_task(never_read(port, stream, over, args.grace))
            for k in kinds
            if k == "non-reader"
        ]
        got = await asyncio.gather(*followers)
        # the turn's duration as the fastest reader saw it (pausers wait on purpose)
        done = [o.finished_at for o in got if o.kind == "reader" and o.finished_at]
        if done:
            phase.turn_seconds.append(min(done) - started)
        over.set()
        got += await asyncio.gather(*silent)
        phase.outcomes += got
        phase.turns += 1
        complete = next((o for o in got if o.kind == "reader" and o.ended), None)
        if complete is not None:
            phase.events += complete.last_seq
        usage = await _usage(port, stream)
        if usage is not None:
            phase.lag_ms.append(usage)


async def _usage(port: int, stream: str) -> int | None:
    """The agent's ``lag_ms`` from the stream's ``usage`` event (replayed)."""
    sock = await _connect(port)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_sendall(sock, _request(port, f"/api/streams/{stream}/events", None))
        parser = _SSEParser()
        while True:
            data = await loop.sock_recv(sock, 65536)
            if not data:
                return None
            parser.feed(data)
            for _, event, payload in parser.events:
                if event == "usage":
                    return int(json.loads(payload)["data"]["lag_ms"])
                if event == "stream.end":
                    return None
            parser.events.clear()
    finally:
        sock.close()


async def run_phase(
    port: int, name: str, clients: int, mix: dict[str, float], args: argparse.Namespace
) -> Phase:
    phase = Phase(name)
    rng = random.Random(args.seed)
    sids = [
        (await _http(port, "POST", "/api/sessions", {"title": f"load {name} {i}"}))["session_id"]
        for i in range(args.sessions)
    ]
    kinds = [rng.choices(list(mix), weights=list(mix.values()))[0] for _ in range(clients)]
    # non-readers go to the first --heavy-sessions sessions, whose turns stream
    # --heavy-bytes tokens: enough to fill the socket buffers, so the server must cut
    # them off; readers and pausers are spread over every session
    per: list[list[str]] = [[] for _ in sids]
    heavy = max(1, min(args.heavy_sessions, len(sids)))
    following = [k for k in kinds if k != "non-reader"]
    for i, kind in enumerate(following):
        per[i % len(sids)].append(kind)
    for i, kind in enumerate(k for k in kinds if k == "non-reader"):
        per[i % heavy].append(kind)
    seconds = args.seconds if name == "load" else args.baseline_seconds
    deadline = time.monotonic() + seconds
    await asyncio.gather(
        *(
            _session_loop(
                port, s, k, deadline, args, phase, args.heavy_bytes if i < heavy else args.bytes
            )
            for i, (s, k) in enumerate(zip(sids, per, strict=True))
        )
    )
    return phase


def _summary(phase: Phase) -> dict[str, Any]:
    following = [o for o in phase.outcomes if o.kind != "non-reader"]
    silent = [o for o in phase.outcomes if o.kind == "non-reader"]
    lost = sum((max(o.seqs) - len(o.seqs)) if o.seqs else 0 for o in following) + sum(
        1 for o in following if not o.ended
    )
    return {
        "turns": phase.turns,
        "events_per_turn": round(phase.events / max(phase.turns, 1)),
        "streams_followed": len(following),
        "events_lost": lost,
        "resumes": sum(o.resumes for o in following),
        "lagged_endings_seen_by_followers": sum(o.lagged for o in following),
        "non_readers": len(silent),
        "non_readers_cut_off": sum(o.cut_off for o in silent),
        "non_readers_cut_off_with_lagged_ending": sum(o.cut_off and o.lagged for o in silent),
        "non_readers_held": sum(o.held for o in silent),
        "non_readers_got_whole_stream": sum(o.ended for o in silent),
        "turn_seconds_median": round(statistics.median(phase.turn_seconds), 3)
        if phase.turn_seconds
        else None,
        "agent_lag_ms_median": statistics.median(phase.lag_ms) if phase.lag_ms else None,
        "agent_lag_ms_max": max(phase.lag_ms) if phase.lag_ms else None,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="load-sse-") as tmp:
        log = Path(tmp) / "server.log"
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("RUNTIME_API_TOKEN", None)
        with log.open("wb") as out:
            server = subprocess.Popen(  # noqa: ASYNC220 - started once, before any client
                [
                    sys.executable,
                    "-m",
                    "runtime",
                    "serve",
                    f"{REPO}/benchmarks/_load_agent.py:agent",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--store",
                    str(Path(tmp) / "store"),
                    "--send-timeout",
                    str(args.send_timeout),
                    "--log-level",
                    "warning",
                ],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            for _ in range(200):
                try:
                    await _http(port, "GET", "/openapi.json", None)
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            rss_idle = _vm(server.pid, "VmRSS")
            readers = (
                args.clients
                - int(args.clients * args.pausers)
                - int(args.clients * args.non_readers)
            )
            samples: list[float] = []
            sampler = asyncio.create_task(_sample_rss(server.pid, samples))
            following = 1 - args.non_readers
            baseline = await run_phase(
                port,
                "baseline",
                readers + int(args.clients * args.pausers),
                {
                    "reader": (following - args.pausers) / following,
                    "pauser": args.pausers / following,
                },
                args,
            )
            rss_baseline = _vm(server.pid, "VmHWM")
            mix = {
                "reader": 1 - args.pausers - args.non_readers,
                "pauser": args.pausers,
                "non-reader": args.non_readers,
            }
            load = await run_phase(port, "load", args.clients, mix, args)
            peak = _vm(server.pid, "VmHWM")
            sampler.cancel()
        finally:
            server.terminate()
            server.wait(timeout=60)
        tracebacks = log.read_text(errors="replace").count("Traceback")
    base, loaded = _summary(baseline), _summary(load)
    ratio = None
    if base["turn_seconds_median"] and loaded["turn_seconds_median"]:
        ratio = round(loaded["turn_seconds_median"] / base["turn_seconds_median"], 3)
    return {
        "command": "python -m benchmarks.load_sse " + " ".join(sys.argv[1:]),
        "clients": args.clients,
        "sessions": args.sessions,
        "seconds": args.seconds,
        "turn": {
            "tokens": args.tokens,
            "bytes": args.bytes,
            "interval_s": args.interval,
            "heavy_sessions": args.heavy_sessions,
            "heavy_bytes": args.heavy_bytes,
        },
        "send_timeout_s": args.send_timeout,
        "fresh_session_per_turn": args.fresh_sessions,
        "baseline_without_non_readers": base,
        "load": loaded,
        "turn_seconds_ratio_load_vs_baseline": ratio,
        "server_rss_idle_mib": round(rss_idle / 2**20, 1),
        "server_peak_rss_baseline_mib": round(rss_baseline / 2**20, 1),
        "server_peak_rss_mib": round(peak / 2**20, 1),
        "server_rss_mib_every_10s": samples[::10],
        "server_tracebacks": tracebacks,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load_sse", description=__doc__)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument(
        "--baseline-seconds", type=float, default=30.0, help="the same load without non-readers"
    )
    p.add_argument("--tokens", type=int, default=150, help="tokens per turn")
    p.add_argument("--bytes", type=int, default=400, help="bytes per token")
    p.add_argument("--interval", type=float, default=0.02, help="seconds between tokens")
    p.add_argument("--pausers", type=float, default=0.2, help="share of clients that pause")
    p.add_argument("--non-readers", type=float, default=0.1, help="share that never read")
    p.add_argument("--pause", type=float, default=2.0, help="seconds a pauser pauses")
    p.add_argument("--pause-every", type=int, default=40, help="events between pauses")
    p.add_argument(
        "--grace", type=float, default=5.0, help="seconds after a turn a non-reader waits"
    )
    p.add_argument("--heavy-sessions", type=int, default=2, help="sessions non-readers follow")
    p.add_argument(
        "--heavy-bytes", type=int, default=16384, help="bytes per token on those sessions"
    )
    p.add_argument("--send-timeout", type=float, default=2.0, help="the server's --send-timeout")
    p.add_argument(
        "--same-sessions",
        dest="fresh_sessions",
        action="store_false",
        help="run every turn of a client group on one session (its history then grows, "
        "and with it each turn's load and final save); default: a new session per turn",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    result = asyncio.run(main_async(args))
    print(json.dumps(result, indent=2))
    bad = result["load"]["events_lost"] or result["load"]["non_readers_held"]
    bad = bad or result["baseline_without_non_readers"]["events_lost"]
    bad = bad or result["server_tracebacks"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
