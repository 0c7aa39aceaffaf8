"""Following, on node B, a turn node A runs, through the store alone: two runtimes on
one real PostgreSQL schema (``RUNTIME_TEST_POSTGRES_DSN``) and no shared event log, as
``uvicorn --workers N`` runs without Redis. B reads A's checkpoints while the turn
runs. Skips without the server, fails under ``CI=true``."""

from __future__ import annotations

from contextlib import AsyncExitStack

import anyio
from postgres_server import dropped_after, new_schema, postgres_dsn

from runtime import Event, Runtime, Turn
from runtime.stores.postgres import PostgresStore


async def slow_agent(turn: Turn) -> None:
    """60 numbered tokens, 20 ms apart."""
    for i in range(1, 61):
        await turn.token(f"t{i:02d} ")
        await anyio.sleep(0.02)
    await turn.reply()


class EventReadsStore(PostgresStore):
    """A PostgresStore that records how many events each ``load_events`` returned."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.reads: list[int] = []

    async def load_events(self, session_id: str, stream_id: str, after_seq: int = 0) -> list[Event]:
        events = await super().load_events(session_id, stream_id, after_seq)
        self.reads.append(len(events))
        return events


async def test_b_reads_only_the_new_events_of_a_stream_it_follows_from_the_store() -> None:
    """B polls the store while A's turn runs; each poll reads the events after the last
    one B handed out, so following a stream costs O(stream), not O(stream) per poll
    (before, every poll read the whole stream from seq 1: tens of polls, each the
    whole stream so far). The subscriber still gets the whole turn, once."""
    dsn, schema = postgres_dsn(), new_schema()
    async with dropped_after(dsn, [schema]), AsyncExitStack() as stack:
        a_store, b_store = PostgresStore(dsn, schema=schema), EventReadsStore(dsn, schema=schema)
        a, b = [
            await stack.enter_async_context(
                Runtime(
                    store,
                    slow_agent,
                    node_id=f"node-{name}",
                    lease_ttl=5.0,
                    checkpoint_interval=0.05,
                    recover_on_start=False,
                )
            )
            for store, name in ((a_store, "a"), (b_store, "b"))
        ]
        session = await a.create_session()
        stream_id = await a.start_turn(session.session_id, "go")
        with anyio.fail_after(30):
            events = [e async for e in b.events(stream_id)]
        seqs = [e.seq for e in events]
        assert seqs == list(range(1, seqs[-1] + 1))
        assert [e.type for e in events[-2:]] == ["done", "stream.end"]
        text = "".join(e.data["text"] for e in events if e.type == "token")
        assert text == "".join(f"t{i:02d} " for i in range(1, 61))
        polls = b_store.reads
        assert len(polls) > 5, polls  # B followed it from the store while it ran
        # every event once while the turn runs, plus the one whole read of its end
        # (the lease released: the stream is read whole, as a dead one would be)
        assert sum(polls) <= 2 * len(events), (sum(polls), len(events), polls)
