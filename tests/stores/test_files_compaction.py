"""FileStore compacts, in the background, a session whose load replayed a long journal.

A checkpoint appends one journal line; only a full save (or a journal past
``compact_bytes``) rewrites the snapshot. A load that replayed at least
``load_compact_records`` records holding ``load_compact_ratio`` of the snapshot's bytes
schedules the full save's compaction under the session's save lock, while no lease is
held. These tests use real files under ``tmp_path``, the public API only
(``journal_info()``, ``statistics()``, ``wait_compactions()``, ``load_events()``), and
a real subprocess killed with SIGKILL at each step of the compaction.
"""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from runtime import Event, Session
from runtime.stores.abc import Lease, SaveDelta
from runtime.stores.files import FileStore

ROOT = Path(__file__).resolve().parents[2]


def msg(i: int) -> dict[str, Any]:
    return {"role": "user" if i % 2 == 0 else "assistant", "content": f"{i}:" + "x" * 300}


def token(seq: int, session_id: str) -> Event:
    return Event(seq, "stream-a", session_id, "token", {"text": f"t{seq}"}, 1000.0 + seq)


async def build(root: Path, *, base: int = 40, checkpoints: int = 20) -> Session:
    """A session of ``base`` messages saved in full, then ``checkpoints`` checkpoints of
    one message each (the first carries a stream's token events); returns it as saved."""
    async with FileStore(root) as store:
        s = store.new_session(title="compaction", metadata={"k": "v"})
        s.messages.extend(msg(i) for i in range(base))
        await store.save(s)
        for i in range(base, base + checkpoints):
            keep = len(s.messages)
            s.messages.append(msg(i))
            events = [token(1, s.session_id), token(2, s.session_id)] if i == base else []
            await store.save(s, skip_index=True, delta=SaveDelta.appended(keep), events=events)
        info = await store.journal_info(s.session_id)
        assert info.journal_records == checkpoints and info.journal_bytes > 0
    return s


def same(a: Session, b: Session) -> None:
    assert a.messages == b.messages
    assert (a.title, a.metadata, a.updated_at, a.created_at) == (
        b.title,
        b.metadata,
        b.updated_at,
        b.created_at,
    )


async def test_a_load_of_a_long_journal_compacts_the_session(tmp_path: Path) -> None:
    saved = await build(tmp_path)
    sid = saved.session_id
    async with FileStore(tmp_path) as store:
        before = await store.journal_info(sid)
        loaded = await store.load(sid)
        same(loaded, saved)
        await store.wait_compactions()
        after = await store.journal_info(sid)
        assert after.gen == before.gen + 1
        assert (after.journal_bytes, after.journal_records) == (0, 0)
        assert after.snapshot_bytes > before.snapshot_bytes
        assert store.statistics()["compactions_after_load"] == 1
        # the next load reads the new snapshot alone, from the page cache
        cached = store.statistics()["loads_page_cache"]
        same(await store.load(sid), saved)
        if hasattr(os, "RWF_NOWAIT"):
            assert store.statistics()["loads_page_cache"] == cached + 1
        # the journal's events moved to the events file with the compaction
        assert [e.seq for e in await store.load_events(sid, "stream-a")] == [1, 2]
        # a checkpoint after it appends under the new generation
        keep = len(loaded.messages)
        loaded.messages.append(msg(999))
        await store.save(loaded, skip_index=True, delta=SaveDelta.appended(keep))
        assert (await store.journal_info(sid)).journal_records == 1
    async with FileStore(tmp_path) as store:
        again = await store.load(sid)
        assert again.messages == [*saved.messages, msg(999)]
        assert [e.seq for e in await store.load_events(sid, "stream-a")] == [1, 2]


async def test_a_short_journal_is_left_alone(tmp_path: Path) -> None:
    saved = await build(tmp_path, base=40, checkpoints=3)  # fewer than 4 records
    async with FileStore(tmp_path) as store:
        same(await store.load(saved.session_id), saved)
        await store.wait_compactions()
        assert (await store.journal_info(saved.session_id)).journal_records == 3
        assert store.statistics()["compactions_after_load"] == 0
    # below the ratio: 20 records of ~330 bytes beside a snapshot of 4,000 messages
    big = tmp_path / "big"
    saved = await build(big, base=4000, checkpoints=20)
    async with FileStore(big) as store:
        same(await store.load(saved.session_id), saved)
        await store.wait_compactions()
        assert (await store.journal_info(saved.session_id)).journal_records == 20
    # and the thresholds are the caller's
    async with FileStore(big, load_compact_ratio=0.001, load_compact_records=20) as store:
        same(await store.load(saved.session_id), saved)
        await store.wait_compactions()
        assert (await store.journal_info(saved.session_id)).journal_records == 0
    off = await build(tmp_path / "off")
    async with FileStore(tmp_path / "off", load_compact_ratio=None) as store:
        same(await store.load(off.session_id), off)
        await store.wait_compactions()
        assert (await store.journal_info(off.session_id)).journal_records == 20


async def test_no_compaction_while_a_turn_holds_the_lease(tmp_path: Path) -> None:
    lease = Lease("node-a", "token-1", ttl=60.0)
    async with FileStore(tmp_path) as store:
        s = store.new_session(title="leased")
        s.messages.extend(msg(i) for i in range(20))
        await store.save(s, lease=lease, lease_mode="claim")
        for i in range(20, 40):
            keep = len(s.messages)
            s.messages.append(msg(i))
            await store.save(
                s, skip_index=True, delta=SaveDelta.appended(keep), lease=lease, lease_mode="renew"
            )
        gen = (await store.journal_info(s.session_id)).gen
        for _ in range(3):  # a UI reloading the session while the turn runs
            assert (await store.load(s.session_id)).messages == s.messages
            await store.wait_compactions()
        info = await store.journal_info(s.session_id)
        assert (info.gen, info.journal_records) == (gen, 20)
        assert store.statistics()["compactions_after_load"] == 0
        # the turn ends (its final save compacts and releases the lease); a later load of
        # a journal written without a lease compacts again
        await store.save(s, lease=lease, lease_mode="release")
        for i in range(40, 50):
            keep = len(s.messages)
            s.messages.append(msg(i))
            await store.save(s, skip_index=True, delta=SaveDelta.appended(keep))
        assert (await store.load(s.session_id)).messages == s.messages
        await store.wait_compactions()
        assert (await store.journal_info(s.session_id)).journal_records == 0
        assert store.statistics()["compactions_after_load"] == 1


@pytest.mark.parametrize("yields", [0, 1, 2, 3, 5, 8])
async def test_saves_racing_the_compaction_lose_nothing(tmp_path: Path, yields: int) -> None:
    """Checkpoints and loads issued right after the load that scheduled the compaction,
    after ``yields`` turns of the event loop: before its task takes the session's lock
    (it then finds the durable state changed and writes nothing), while it runs in the
    I/O thread (checkpoints wait for the lock; loads read the old generation or the new
    one), or after it."""
    saved = await build(tmp_path)
    sid = saved.session_id
    async with FileStore(tmp_path) as store:
        s = await store.load(sid)
        for _ in range(yields):
            await anyio.lowlevel.checkpoint()
        expected = list(s.messages)

        async def checkpoints() -> None:
            for i in range(100, 110):
                keep = len(s.messages)
                s.messages.append(msg(i))
                expected.append(msg(i))
                await store.save(s, skip_index=True, delta=SaveDelta.appended(keep))

        async def loads() -> None:
            for _ in range(10):
                loaded = await store.load(sid)
                n = len(loaded.messages)
                assert n >= len(saved.messages)
                assert loaded.messages == expected[:n]

        async with anyio.create_task_group() as tg:
            tg.start_soon(checkpoints)
            tg.start_soon(loads)
        await store.wait_compactions()
        assert (await store.load(sid)).messages == expected
        info = await store.journal_info(sid)
        compacted = store.statistics()["compactions_after_load"]
        if yields >= 1:  # its task took the lock before the first checkpoint
            assert compacted >= 1
        # the journal holds the checkpoints the last compaction did not absorb
        assert info.journal_records <= 10 or compacted == 0
    async with FileStore(tmp_path) as store:
        again = await store.load(sid)
        assert again.messages == expected
        assert [e.seq for e in await store.load_events(sid, "stream-a")] == [1, 2]


async def test_a_delete_racing_the_compaction_wins(tmp_path: Path) -> None:
    saved = await build(tmp_path)
    sid = saved.session_id
    async with FileStore(tmp_path) as store:
        await store.load(sid)
        await store.delete(sid)  # waits for the compaction's lock, then removes it all
        await store.wait_compactions()
        assert not await store.exists(sid)
    left = [p.name for p in (tmp_path / "sessions").iterdir() if p.name.startswith(sid)]
    assert left == []
    async with FileStore(tmp_path) as store:
        assert not await store.exists(sid)


@pytest.mark.skipif(
    not hasattr(os, "RWF_NOWAIT"), reason="the load must read the page cache on the loop"
)
async def test_no_compaction_while_a_save_holds_the_lock(tmp_path: Path) -> None:
    """A load that ends while a save of the session runs: the compaction it schedules
    waits for the lock, finds the durable state changed by that save, writes nothing."""
    saved = await build(tmp_path)
    sid = saved.session_id
    async with FileStore(tmp_path) as store:
        s = await store.load(sid)
        await store.wait_compactions()
        for i in range(100, 120):  # a long journal again
            keep = len(s.messages)
            s.messages.append(msg(i))
            await store.save(s, skip_index=True, delta=SaveDelta.appended(keep))
        store.load_compact_ratio = None  # this load only keeps the descriptors
        await store.load(sid)
        store.load_compact_ratio = 0.1
        done = store.statistics()["compactions_after_load"]
        async with anyio.create_task_group() as tg:
            keep = len(s.messages)
            s.messages.append(msg(120))
            tg.start_soon(lambda: store.save(s, skip_index=True, delta=SaveDelta.appended(keep)))
            await anyio.lowlevel.checkpoint()  # the save has taken the lock, is in the thread
            assert (await store.load(sid)).messages[:keep] == s.messages[:keep]
        await store.wait_compactions()
        assert store.statistics()["compactions_after_load"] == done
        assert (await store.journal_info(sid)).journal_records == 21
        assert (await store.load(sid)).messages == s.messages  # this one compacts
        await store.wait_compactions()
        assert (await store.journal_info(sid)).journal_records == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"load_compact_ratio": 0},
        {"load_compact_ratio": -0.5},
        {"load_compact_ratio": float("nan")},
        {"load_compact_ratio": float("inf")},
        {"load_compact_ratio": True},
        {"load_compact_ratio": "0.1"},
        {"load_compact_records": 0},
        {"load_compact_records": 2.5},
        {"load_compact_records": False},
    ],
)
def test_bad_thresholds_are_refused(tmp_path: Path, bad: dict[str, Any]) -> None:
    ((name, value),) = bad.items()
    with pytest.raises(ValueError, match=f"invalid {name} {value!r}"):
        FileStore(tmp_path, **bad)
    assert not tmp_path.joinpath("sessions").exists()  # nothing written


_CHILD = textwrap.dedent(
    """
    import sys, anyio
    from runtime.stores.files import FileStore

    async def main():
        async with FileStore(sys.argv[1]) as store:
            await store.load(sys.argv[2])
            print("loaded", flush=True)
            await store.wait_compactions()
            print("compacted", store.statistics()["compactions_after_load"], flush=True)

    anyio.run(main)
    """
)

#: every file step of the compaction: the new snapshot's temp file (torn, synced),
#: its rename, the events file, the journal's truncation and sync, the directory's sync
KILLS = [
    "kill-torn:snapshot_write:1",
    "kill-after:snapshot_write:1",
    "kill-torn:events_file:1",
    "kill-after:events_file:1",
    "kill:fsync:2",
    "kill:rename:2",
    "kill-after:rename:2",
    "kill:truncate:1",
    "kill-after:truncate:1",
    "kill-after:fsync:3",
    "kill:dir_fsync:1",
    "kill-after:dir_fsync:1",
]


@pytest.mark.parametrize("spec", KILLS)
async def test_sigkill_mid_compaction_loses_nothing(tmp_path: Path, spec: str) -> None:
    """A child process loads a session with a long journal and waits for the compaction
    the load scheduled; it is SIGKILLed at one step of it (``RUNTIME_FILESTORE_FAULT``,
    see :mod:`runtime.stores.faults`). Reopened, the session holds every message and
    event, and a later load compacts it."""
    saved = await build(tmp_path)
    sid = saved.session_id
    env = dict(os.environ, RUNTIME_FILESTORE_FAULT=spec)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    with anyio.fail_after(60):
        child = await anyio.run_process(
            [sys.executable, "-c", _CHILD, str(tmp_path), sid], env=env, check=False
        )
    assert child.returncode == -signal.SIGKILL, (child.stdout, child.stderr)
    # the kill came from the compaction: nothing else in the child writes (its load
    # reads only), and it never got to print "compacted"
    assert b"loaded" in child.stdout
    assert b"compacted" not in child.stdout
    async with FileStore(tmp_path) as store:
        same(await store.load(sid), saved)
        assert [e.seq for e in await store.load_events(sid, "stream-a")] == [1, 2]
        await store.wait_compactions()
        assert (await store.journal_info(sid)).journal_records == 0
    async with FileStore(tmp_path) as store:
        same(await store.load(sid), saved)
        assert [e.seq for e in await store.load_events(sid, "stream-a")] == [1, 2]
