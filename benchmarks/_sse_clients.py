"""The SSE load generator of W5 and WREDIS's W5, run as a child process.

``python -m benchmarks._sse_clients --ports A[,B] --stream-id S --subscribers N
--events E --go PATH --timeout SECONDS``

Opens ``N`` raw HTTP/1.1 connections to ``GET /api/streams/{S}/events``, spread over the
ports in turn (subscriber ``i`` on ``ports[i % len(ports)]``), 100 at a time, each
waiting for its ``stream.started``; then creates ``--go`` (the server's agent starts
emitting when it exists) and follows every stream to ``stream.end`` or ``--timeout``.
Prints one line ``result <json>``: per port, the subscribers, tokens received, ids
skipped, streams ended and the latency percentiles (receipt time minus the event's
publish ``ts``, one clock, one machine, over every token whose seq is a multiple of
the stride); and the connect time, the stream time and this process's CPU seconds.

The load generator shares the machine with the servers it measures, so it is kept
cheap: its own process (not the benchmark's, whose other workloads run on the stock
asyncio loop), on uvloop when that is installed (the ``bench`` extra installs it on
Linux and macOS; the result says which loop ran), checking each read whole with
C-level passes over the bytes. The servers run on the stock asyncio loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import resource
import sys
import time
from array import array
from pathlib import Path
from typing import Any

from ._stats import percentile

_EVENT = re.compile(rb'id: (\d+)\nevent: ([\w.]+)\ndata: [^\n]*"ts":([0-9.eE+-]+)\}\n\n')
_ID = re.compile(rb"id: (\d+)\n")
_TS = re.compile(rb'"ts":([0-9.eE+-]+)\}\n\n')
_KIND = re.compile(rb"\nevent: ([\w.]+)\n")
_TOKEN = b"\nevent: token\n"
_STREAM = b"\nevent: stream."


class Subscriber(asyncio.Protocol):
    """One SSE client: a raw HTTP/1.1 GET whose events are checked as bytes arrive.

    Every read is checked whole: its ids (one ``findall``) must be the next ones in
    order, each exactly once, and no event may start or end the stream; then the
    tokens are counted and the latency (receipt time minus the event's publish ``ts``)
    taken for each token whose seq is a multiple of ``stride``, with C-level passes
    over the bytes. A read that is anything else (the stream's first or last events, a
    gap, a repeat) goes through the event-by-event parse, which counts the gap and
    records the same latencies.
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
        self.transport: Any = None  # asyncio's or uvloop's transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.transport.write(self.request)

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
        if n and list(map(int, ids)) == list(range(first, first + n)):
            stamps = _TS.findall(buf, 0, stop)
            tokens = buf.count(_TOKEN, 0, stop)
            if len(stamps) == n and tokens == n:  # all tokens: the common read
                self.last_seq = first + n - 1
                self.tokens += n
                sampled = stamps[(-first) % self.stride :: self.stride]
                self.latencies.extend([now - float(ts) for ts in sampled])
                return
            if len(stamps) == n and buf.find(_STREAM, 0, stop) < 0:
                # tokens and other events (a checkpoint, done), none that starts or
                # ends the stream: sample the tokens among them
                kinds = _KIND.findall(buf, 0, stop)
                if len(kinds) == n:
                    self.last_seq = first + n - 1
                    self.tokens += tokens
                    for i in range((-first) % self.stride, n, self.stride):
                        if kinds[i] == b"token":
                            self.latencies.append(now - float(stamps[i]))
                    return
        self.parse(buf, stop, now)

    def parse(self, buf: bytes, stop: int, now: float) -> None:
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


def raise_nofile(need: int) -> None:
    """Raise this process's open-file limit to ``need`` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


def stride_for(subscribers: int, events: int) -> int:
    """Every how many seqs a latency is sampled: about a million samples in all."""
    return max(1, (subscribers * events) // 1_000_000)


async def _follow(args: argparse.Namespace) -> dict[str, Any]:
    ports = [int(p) for p in args.ports.split(",")]
    raise_nofile(args.subscribers + 256)
    loop = asyncio.get_running_loop()
    stride = stride_for(args.subscribers, args.events)
    subs: list[tuple[int, Subscriber]] = []
    t_connect = time.perf_counter()
    for lo in range(0, args.subscribers, 100):
        batch = []
        for i in range(lo, min(lo + 100, args.subscribers)):
            port = ports[i % len(ports)]
            request = (
                f"GET /api/streams/{args.stream_id}/events HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            sub = Subscriber(request, stride, loop.create_future())
            batch.append(sub)
            # the factory runs before create_connection returns, so sub is this one
            await loop.create_connection(lambda: sub, "127.0.0.1", port)  # noqa: B023
            subs.append((port, sub))
        await asyncio.gather(*(s.ready for s in batch))
    connect_s = time.perf_counter() - t_connect
    await asyncio.to_thread(Path(args.go).write_bytes, b"go")
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    with contextlib.suppress(TimeoutError):  # what arrived by then is counted
        await asyncio.wait_for(asyncio.gather(*(s.done for _, s in subs)), args.timeout)
    elapsed = time.perf_counter() - t0
    client_cpu = time.process_time() - cpu0
    for _, s in subs:
        if s.transport is not None:
            s.transport.close()
    groups: dict[str, Any] = {}
    for port in ports:
        group = [s for p, s in subs if p == port]
        lat = [x for s in group for x in s.latencies]
        groups[str(port)] = {
            "subscribers": len(group),
            "tokens": sum(s.tokens for s in group),
            "gaps": sum(s.gaps for s in group),
            "ended": sum(1 for s in group if s.ended),
            "latency_samples": len(lat),
            "p50_ms": percentile(lat, 50) * 1000 if lat else None,
            "p99_ms": percentile(lat, 99) * 1000 if lat else None,
            "max_ms": max(lat) * 1000 if lat else None,
        }
    return {
        "ports": groups,
        "connect_s": round(connect_s, 3),
        "stream_s": round(elapsed, 3),
        "client_cpu_s": round(client_cpu, 3),
        "latency_stride": stride,
        "loop": type(loop).__module__.split(".")[0],
    }


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks._sse_clients")
    p.add_argument("--ports", required=True, help="comma-separated server ports")
    p.add_argument("--stream-id", required=True)
    p.add_argument("--subscribers", type=int, required=True)
    p.add_argument("--events", type=int, required=True, help="tokens the stream carries")
    p.add_argument("--go", required=True, help="file to create once every client is ready")
    p.add_argument("--timeout", type=float, required=True, help="seconds to follow at most")
    args = p.parse_args()
    try:
        import uvloop
    except ImportError:  # not installed (or not on this platform): the stock loop
        result = asyncio.run(_follow(args))
    else:
        result = uvloop.run(_follow(args))
    sys.stdout.write(f"result {json.dumps(result)}\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
