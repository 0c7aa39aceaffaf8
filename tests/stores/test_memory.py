"""MemoryStore specifics: JSON copies in and out, the ``backups`` dict, tombstones and
orphan recovery (the conformance suite covers the common contract)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from runtime._events import Event
from runtime._session import Session
from runtime.stores.memory import MemoryStore


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    async with MemoryStore() as s:
        yield s


def _session(sid: str, n: int, **fields: object) -> Session:
    messages = [{"role": "user", "content": f"{sid} {i}", "meta": {"i": i}} for i in range(n)]
    return Session(sid, title="t", messages=messages, **fields)  # type: ignore[arg-type]


async def test_loaded_session_is_a_deep_copy(store: MemoryStore) -> None:
    await store.save(_session("a", 2, metadata={"tags": ["x"]}))
    loaded = await store.load("a")
    loaded.messages[0]["content"] = "changed"
    loaded.messages[1]["meta"]["i"] = 99
    loaded.messages.append({"role": "user", "content": "extra"})
    loaded.metadata["tags"].append("y")
    again = await store.load("a")
    assert [m["content"] for m in again.messages] == ["a 0", "a 1"]
    assert again.messages[1]["meta"] == {"i": 1}
    assert again.metadata == {"tags": ["x"]}
    assert store.sessions["a"].to_dict()["messages"][0]["content"] == "a 0"


async def test_saved_session_is_copied_in(store: MemoryStore) -> None:
    session = _session("a", 1)
    await store.save(session)
    session.messages[0]["meta"]["i"] = 42
    session.metadata["k"] = "v"
    assert store.sessions["a"].to_dict()["messages"][0]["meta"] == {"i": 0}
    assert store.sessions["a"].to_dict()["metadata"] == {}


async def test_metadata_rows_are_copies(store: MemoryStore) -> None:
    await store.save(_session("a", 3, metadata={"nested": {"n": 1}}))
    meta = await store.load_metadata("a")
    assert meta.message_count == 3
    meta.metadata["nested"]["n"] = 2
    assert store.sessions["a"].to_dict()["metadata"] == {"nested": {"n": 1}}


async def test_shrinking_save_keeps_previous_state_in_backups(store: MemoryStore) -> None:
    session = _session("a", 3)
    await store.save(session)
    previous = store.sessions["a"]
    assert store.backups == {}
    session.messages = session.messages[:1]
    await store.save(session)
    assert store.backups["a"] is previous
    assert len(store.backups["a"].to_dict()["messages"]) == 3
    assert len(store.sessions["a"].to_dict()["messages"]) == 1


async def test_growing_save_makes_no_backup(store: MemoryStore) -> None:
    session = _session("a", 1)
    await store.save(session)
    session.messages.append({"role": "assistant", "content": "more"})
    await store.save(session)
    assert store.backups == {}


async def test_growing_past_the_backup_drops_it(store: MemoryStore) -> None:
    session = _session("a", 3)
    await store.save(session)
    session.messages = session.messages[:1]
    await store.save(session)
    session.messages = [*session.messages, {"role": "user", "content": "x"}]
    await store.save(session)
    assert "a" in store.backups, "2 < 3 messages: the backup is still worth restoring"
    session.messages = [*session.messages, {"role": "user", "content": "y"}]
    await store.save(session)
    assert "a" not in store.backups, "3 >= 3 messages: recovery would never restore it"


async def test_delete_drops_backup_and_events_and_leaves_tombstone(store: MemoryStore) -> None:
    session = _session("a", 3, active_stream_id="s1")
    await store.save(session, events=[Event(1, "s1", "a", "token", {"text": "x"}, 1.0)])
    session.messages = session.messages[:2]
    await store.save(session)
    assert "a" in store.backups
    await store.delete("a")
    assert "a" not in store.sessions
    assert "a" not in store.backups
    assert store.tombstones == {"a"}
    assert await store.load_events("a", "s1") == []


async def test_saving_again_after_delete_lifts_the_tombstone(store: MemoryStore) -> None:
    await store.save(_session("a", 1))
    await store.delete("a")
    await store.save(_session("a", 2))
    assert store.tombstones == set()
    assert (await store.load("a")).message_count == 2


async def test_recover_recreates_a_session_from_an_orphan_backup(store: MemoryStore) -> None:
    """The orphan is made by removing the live record by hand: in memory nothing else
    can lose it, but this is the state FileStore finds after a crash between writing
    ``<id>.json.bak`` and ``<id>.json``."""
    session = _session("a", 3)
    await store.save(session)
    session.messages = session.messages[:1]
    await store.save(session)
    del store.sessions["a"]
    assert await store.recover() == {
        "scanned": 1,
        "restored": 1,
        "orphaned_backups": 1,
        "quarantined": 0,
    }
    assert (await store.load("a")).message_count == 3


async def test_recover_skips_tombstoned_backups(store: MemoryStore) -> None:
    """A backup left next to a tombstone (set by hand) is never restored."""
    await store.save(_session("a", 3))
    store.backups["a"] = store.sessions.pop("a")
    store.tombstones.add("a")
    assert await store.recover() == {
        "scanned": 0,
        "restored": 0,
        "orphaned_backups": 0,
        "quarantined": 0,
    }
    assert not await store.exists("a")


async def test_events_are_copied_in(store: MemoryStore) -> None:
    event = Event(1, "s1", "a", "token", {"text": "x", "list": [1]}, 1.0)
    await store.save(_session("a", 1, active_stream_id="s1"), events=[event])
    event.data["list"].append(2)
    (stored,) = await store.load_events("a", "s1")
    assert stored.data == {"text": "x", "list": [1]}
    assert stored is not event


async def test_nothing_outlives_the_instance() -> None:
    async with MemoryStore() as first:
        await first.save(_session("a", 1))
    async with MemoryStore() as second:
        assert not await second.exists("a")
        assert await second.recover() == {
            "scanned": 0,
            "restored": 0,
            "orphaned_backups": 0,
            "quarantined": 0,
        }


async def test_saves_after_a_recovery_leave_the_restored_backup_intact(
    store: MemoryStore,
) -> None:
    """Recovery puts the backup back as the live state, so both dicts hold one saved
    state: a save must not change it in place under the backup (saves refill the
    stored state in place only when nothing else holds it)."""
    session = _session("a", 3)
    await store.save(session)
    session.messages = session.messages[:1]
    await store.save(session)  # shrinking: the 3-message state is the backup
    del store.sessions["a"]
    await store.recover()
    assert store.sessions["a"] is store.backups["a"]
    smaller = _session("a", 2)
    await store.save(smaller, skip_index=True)
    assert len(store.backups["a"].to_dict()["messages"]) == 3
    assert (await store.load("a")).message_count == 2
    grown = _session("a", 4)
    await store.save(grown)
    await store.save(_session("a", 5))  # refilled in place now: nothing else holds it
    assert (await store.load("a")).message_count == 5
    assert "a" not in store.backups
