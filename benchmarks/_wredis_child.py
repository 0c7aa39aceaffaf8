"""WREDIS's subscriber, run as a child process: follows one stream on Redis and prints
``attached`` once it has the first entry, then ``done <tokens>`` after the last.

``python -m benchmarks._wredis_child --url URL --prefix P --mode runtime|bare``, the
stream id on the first line of stdin (the producer knows it only once the stream
started).

* ``runtime``: ``RedisEventLog.attach(stream)`` and ``read()`` until ``stream.end``
  (what another node's subscribers do);
* ``bare``: ``XREAD BLOCK`` on the key from ``0-0``, each entry's JSON decoded, until
  the entry of type ``stream.end`` (the floor).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _runtime(args: argparse.Namespace) -> int:
    from runtime import StreamNotFound
    from runtime.brokers.redis import RedisEventLog

    broker = RedisEventLog(args.url, prefix=args.prefix)
    try:
        while True:
            try:
                log = await broker.attach(args.stream)
                break
            except StreamNotFound:
                await asyncio.sleep(0.001)
        tokens, after = 0, 0
        while batch := await log.read(after):
            if after == 0:
                _say("attached")
            after = batch[-1].seq
            tokens += sum(1 for e in batch if e.type == "token")
        return tokens
    finally:
        await broker.aclose()


async def _bare(args: argparse.Namespace) -> int:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(args.url)
    key = f"{args.prefix}:{args.stream}"
    tokens, last, attached = 0, "0-0", False
    try:
        while True:
            reply = await client.xread({key: last}, count=4096, block=1000)
            if not reply:
                continue
            for entry_id, fields in reply[0][1]:
                last = entry_id
                event = orjson.loads(fields[b"e"])
                if not attached:
                    _say("attached")
                    attached = True
                if event["type"] == "token":
                    tokens += 1
                elif event["type"] == "stream.end":
                    return tokens
    finally:
        await client.aclose()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks._wredis_child")
    p.add_argument("--url", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--mode", choices=["runtime", "bare"], required=True)
    args = p.parse_args()
    args.stream = sys.stdin.readline().strip()
    tokens = asyncio.run(_runtime(args) if args.mode == "runtime" else _bare(args))
    _say(f"done {tokens}")


if __name__ == "__main__":
    main()
