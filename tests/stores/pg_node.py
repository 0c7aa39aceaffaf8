"""Node A of the sweep test: ``python tests/stores/pg_node.py DSN SCHEMA``.

Starts one turn of :func:`counter` on ``PostgresStore(DSN, schema=SCHEMA)`` with a
one-second lease, prints the session id once a checkpoint has made part of the turn
durable, and runs until it is killed (the test sends SIGKILL: a crashed node).
"""

from __future__ import annotations

import sys

import anyio

from runtime import Runtime, Turn
from runtime.stores.postgres import PostgresStore

TOKENS = 60


async def counter(turn: Turn) -> None:
    """``TOKENS`` numbered tokens, 50 ms apart, then the reply they make; a resumed
    attempt streams them again from the start."""
    for i in range(1, TOKENS + 1):
        await turn.token(f"c{i:02d} ")
        await anyio.sleep(0.05)
    await turn.reply()


async def main(dsn: str, schema: str) -> None:
    async with Runtime(
        PostgresStore(dsn, schema=schema),
        counter,
        node_id="node-a",
        lease_ttl=1.0,
        checkpoint_interval=0.05,
        recover_on_start=False,
    ) as rt:
        session = await rt.create_session()
        stream_id = await rt.start_turn(session.session_id, "count")
        async for event in rt.events(stream_id):
            if event.type == "checkpoint" and event.data.get("persisted_seq", 0) > 5:
                print(session.session_id, flush=True)
                break
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
