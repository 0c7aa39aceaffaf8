"""runtime.repair without a Runtime or an agent: stale means the lease expired (or, on a
store one process owns, no task runs the stream); repair happens once, from a full load."""

from __future__ import annotations

import uuid
from pathlib import Path

import anyio

from runtime import FileStore, MemoryStore, Session
from runtime.repair import is_stale, load_repaired
from runtime.stores.abc import Lease


def _streaming(sid: str) -> Session:
    return Session(
        sid,
        messages=[{"role": "user", "content": "earlier"}],
        active_stream_id=f"{'a' * 16}.{sid}",
        pending_user_message="lost prompt",
        pending_started_at=1_700_000_000.0,
    )


async def test_exclusive_store_repairs_at_once_and_only_once(tmp_path: Path) -> None:
    async with FileStore(tmp_path) as store:
        await store.save(_streaming("crashed"))
    async with FileStore(tmp_path) as store:  # a new process: nobody runs the stream
        first = await load_repaired(store, "crashed")
        second = await load_repaired(store, "crashed")
    assert first.active_stream_id is None and first.pending_user_message is None
    contents = [m["content"] for m in first.messages]
    assert contents[:2] == ["earlier", "lost prompt"] and first.messages[1]["_recovered"]
    assert [m.get("type") for m in first.messages].count("interrupted") == 1
    assert second.to_dict() == first.to_dict()


async def test_shared_rules_follow_the_lease() -> None:
    async with MemoryStore() as store:
        s = _streaming("leased")
        await store.save(s, lease=Lease("node-a", uuid.uuid4().hex, 0.2), lease_mode="claim")
        assert not await is_stale(store, s)  # the lease is still running
        untouched = await load_repaired(store, "leased")
        assert untouched.active_stream_id == s.active_stream_id
        assert not await is_stale(store, s, running={"other"})
        assert not await is_stale(store, s, running={s.active_stream_id or ""})
        await anyio.sleep(0.3)
        assert await is_stale(store, s)
        repaired = await load_repaired(store, "leased")
        assert repaired.active_stream_id is None
        assert await store.lease_state("leased") is None  # taken over and freed in one write


async def test_recover_is_a_maintenance_step_the_runtime_can_skip() -> None:
    """A shrinking save leaves a backup; a Runtime entered with recover_on_start=False
    leaves it (recovery None), the default one restores it and reports it."""
    from runtime import Runtime
    from runtime.testing import scripted_agent

    store = MemoryStore()
    async with store:
        s = Session(
            "shrunk", title="t", messages=[{"role": "user", "content": str(i)} for i in range(4)]
        )
        await store.save(s)
        s.messages = s.messages[:1]
        await store.save(s)
    again = MemoryStore()
    again.sessions, again.backups = store.sessions, store.backups
    async with Runtime(again, scripted_agent([]), recover_on_start=False) as rt:
        assert rt.recovery is None
        assert (await rt.get_session("shrunk")).message_count == 1
    third = MemoryStore()
    third.sessions, third.backups = store.sessions, store.backups
    async with Runtime(third, scripted_agent([])) as rt:
        assert rt.recovery is not None and rt.recovery["restored"] == 1
        assert (await rt.get_session("shrunk")).message_count == 4
