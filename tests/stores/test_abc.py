"""The Store ABC's own bookkeeping: the per-session write locks (kept for reuse between
saves, pruned so that their number stays bounded). Runs on MemoryStore, the reference
backend; the contract itself is checked by the conformance suite."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from runtime._events import Event
from runtime._session import Session
from runtime.stores.abc import Lease, Store
from runtime.stores.memory import MemoryStore


class SlowWrites(MemoryStore):
    """Records when each write starts and ends, and yields to the loop in between, so
    that overlapping writes of one session would show."""

    def __init__(self) -> None:
        super().__init__()
        self.trace: list[tuple[str, str, int]] = []

    async def _write(
        self, session: Session, *, skip_index: bool, backup: bool, events: Sequence[Event]
    ) -> None:
        self.trace.append(("start", session.session_id, len(session.messages)))
        await anyio.sleep(0.001)
        await super()._write(session, skip_index=skip_index, backup=backup, events=events)
        self.trace.append(("end", session.session_id, len(session.messages)))


async def test_saves_of_one_session_never_overlap() -> None:
    async with SlowWrites() as store:
        sessions = [Session(f"s{i}", title="t") for i in range(3)]
        async with anyio.create_task_group() as tg:
            for k in range(4):
                for s in sessions:
                    s.messages.append({"role": "user", "content": str(k)})
                    tg.start_soon(store.save, s)
        open_writes: set[str] = set()
        for what, sid, _ in store.trace:
            if what == "start":
                assert sid not in open_writes, f"two saves of {sid} overlapped"
                open_writes.add(sid)
            else:
                open_writes.remove(sid)
        assert len(store.trace) == 2 * 4 * 3


async def test_the_lock_of_a_session_is_reused_and_idle_locks_are_bounded() -> None:
    async with MemoryStore() as store:
        s = Session("hot", title="t", messages=[{"role": "user", "content": "x"}])
        await store.save(s)
        lock = store._locks["hot"]
        await store.save(s, skip_index=True)
        assert store._locks["hot"] is lock  # no new lock per save

        for i in range(3 * Store._LOCKS_KEPT):
            await store.save(Session(f"s{i}", title="t", messages=[{"role": "user"}]))
            assert len(store._locks) <= Store._LOCKS_KEPT


async def test_pruning_keeps_the_locks_in_use() -> None:
    """A lock held (or waited for) when the dict is pruned must stay: dropping it would
    let a new save of that session take a second lock and run alongside."""
    async with MemoryStore() as store:
        held = store._session_lock("busy")
        async with held:
            for i in range(2 * Store._LOCKS_KEPT):
                store._session_lock(f"idle{i}")
            assert store._locks["busy"] is held
            assert store._session_lock("busy") is held


async def test_pruning_keeps_the_locks_of_leased_sessions() -> None:
    """A session whose lease this process holds (a live turn) saves again at its next
    checkpoint: its lock survives pruning while idle, and goes once the lease is
    released, so the table stays bounded by the live and busy sessions."""
    async with MemoryStore() as store:
        lease = Lease("node", "token-1", 30.0)
        live = Session("live", title="t", messages=[{"role": "user", "content": "x"}])
        live.active_stream_id = "stream-1"
        await store.save(live, lease=lease, lease_mode="claim")
        lock = store._locks["live"]
        assert lock.idle()
        for i in range(2 * Store._LOCKS_KEPT):
            await store.save(Session(f"s{i}", title="t", messages=[{"role": "user"}]))
        assert store._locks["live"] is lock  # pruned twice over, kept: it is leased
        assert len(store._locks) <= Store._LOCKS_KEPT

        live.active_stream_id = None
        await store.save(live, lease=lease, lease_mode="release")
        for i in range(Store._LOCKS_KEPT):
            await store.save(Session(f"t{i}", title="t", messages=[{"role": "user"}]))
        assert "live" not in store._locks  # released: an idle lock like any other


async def test_the_default_active_listing_pages_through_many_sessions() -> None:
    """A backend without an index of active sessions (MemoryStore uses the ABC's
    default) still lists exactly them, in order, when they are spread over more
    sessions than one scan of its listing reads."""
    async with MemoryStore() as store:
        active = []
        for i in range(1_200):
            s = Session(f"s{i:04d}", title="t", updated_at=float(i), messages=[{"role": "user"}])
            if i % 170 == 3:
                s.active_stream_id = f"stream-{i}"
                active.append(s.session_id)
            await store.save(s, touch_updated_at=False)
        pages, cursor = [], None
        while True:
            page = await store.list_sessions(limit=3, cursor=cursor, active=True)
            pages.append([s.session_id for s in page.sessions])
            if (cursor := page.next_cursor) is None:
                break
        assert len(active) == 8 and [len(p) for p in pages] == [3, 3, 2]
        assert [sid for p in pages for sid in p] == active[::-1]  # newest first
