"""FileStore loads read from the page cache on the event loop's thread.

A load of a session an earlier load read keeps that load's descriptors and reads them
with ``preadv2(RWF_NOWAIT)``: no ``open`` (a path lookup may wait for the disk), no
wait for a page the kernel would have to fetch. Everything else (the first load, a
snapshot replaced by a compaction, a page not in memory, a damaged journal) goes to the
I/O thread. ``FileStore.statistics()`` counts both kinds of load; every test checks the
loaded messages against what was saved, and the counters say which path served them.

Real files under ``tmp_path``; pages are dropped from the page cache with
``posix_fadvise(POSIX_FADV_DONTNEED)`` and their absence checked with ``mincore(2)``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from runtime import Session
from runtime.stores.abc import SaveDelta
from runtime.stores.files import FileStore

pytestmark = pytest.mark.skipif(
    not hasattr(os, "RWF_NOWAIT"), reason="preadv2(RWF_NOWAIT) is Linux only"
)


def msg(i: int) -> dict[str, Any]:
    return {"role": "user" if i % 2 == 0 else "assistant", "content": str(i)}


def contents(session: Session) -> list[str]:
    return [m["content"] for m in session.messages]


def expected(n: int) -> list[str]:
    return [str(i) for i in range(n)]


def loads(store: FileStore) -> tuple[int, int]:
    """(loads read from the page cache, loads read in the I/O thread) so far."""
    stats = store.statistics()
    return stats["loads_page_cache"], stats["loads_io_thread"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


async def checkpoint(store: FileStore, s: Session, i: int) -> None:
    s.messages.append(msg(i))
    await store.save(s, skip_index=True, delta=SaveDelta.appended(i))


async def test_loads_from_the_page_cache_follow_checkpoints_compactions_and_deletes(
    root: Path,
) -> None:
    async with FileStore(root) as store:
        s = store.new_session(session_id="s1", title="cached")
        s.messages.extend(msg(i) for i in range(3))
        await store.save(s)
        assert contents(await store.load("s1")) == expected(3)
        assert loads(store) == (0, 1)  # the first load opens the files
        assert contents(await store.load("s1")) == expected(3)
        assert loads(store) == (1, 1)
        await checkpoint(store, s, 3)  # the journal was empty: its descriptor is not kept
        assert contents(await store.load("s1")) == expected(4)
        assert loads(store) == (1, 2)
        for i in (4, 5):
            await checkpoint(store, s, i)
            assert contents(await store.load("s1")) == expected(i + 1)
        assert loads(store) == (3, 2)
        s.messages.append(msg(6))
        await store.save(s)  # a full save replaces the snapshot
        assert contents(await store.load("s1")) == expected(7)
        assert loads(store) == (3, 3)
        assert contents(await store.load("s1")) == expected(7)
        assert loads(store) == (4, 3)
        await store.delete("s1")
        fresh = store.new_session(session_id="s1", title="again")
        fresh.messages.append(msg(0))
        await store.save(fresh)
        again = await store.load("s1")
        assert (again.title, contents(again)) == ("again", ["0"])
        assert loads(store) == (4, 4)


async def test_page_cache_loads_of_sessions_of_every_size_share_one_read_buffer(
    root: Path,
) -> None:
    """Loads from the page cache read snapshots into one buffer the store reuses (no
    zero-filled buffer per load): sessions smaller and larger than it, one larger than
    the most it keeps (2 MiB), loaded in turn, each come back whole and unmixed."""
    sizes = {"small": 3, "mid": 400, "big": 3_000}
    bulk = "x" * 1_000  # 3,000 messages of ~1 KB: a ~3 MB snapshot
    async with FileStore(root) as store:
        for sid, n in sizes.items():
            s = store.new_session(session_id=sid, title=sid)
            s.messages.extend({"role": "user", "content": f"{sid}{i}{bulk}"} for i in range(n))
            await store.save(s)
            await store.load(sid)  # the first load keeps the descriptors
        before = loads(store)
        for sid in ["big", "small", "mid", "big", "mid", "small", "big"]:
            got = await store.load(sid)
            assert [m["content"] for m in got.messages] == [
                f"{sid}{i}{bulk}" for i in range(sizes[sid])
            ]
        assert loads(store) == (before[0] + 7, before[1])


async def test_a_journal_changed_behind_the_store_is_read_in_the_io_thread(
    root: Path,
) -> None:
    """A journal line damaged by hand under a running store is not served from the
    kept descriptors: the I/O thread reads it, keeps the lines before the damage and
    quarantines a copy, as for any load."""
    async with FileStore(root) as store:
        s = store.new_session(session_id="s1")
        s.messages.extend(msg(i) for i in range(2))
        await store.save(s)
        for i in (2, 3):
            await checkpoint(store, s, i)
        assert contents(await store.load("s1")) == expected(4)
        assert contents(await store.load("s1")) == expected(4)
        assert loads(store) == (1, 1)
        journal = root / "sessions" / "s1.journal"
        lines = journal.read_bytes().splitlines(keepends=True)
        damaged = b"{" + b"!" * (len(lines[1]) - 2) + b"\n"  # same size: not a short read
        journal.write_bytes(lines[0] + damaged)
        assert contents(await store.load("s1")) == expected(3)
        assert loads(store) == (1, 2)
        assert list((root / "sessions" / "_quarantine").iterdir())


def _mincore() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fn = libc.mincore
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    fn.restype = ctypes.c_int
    return fn


def cached_pages(path: Path) -> int:
    """How many of the file's pages the page cache holds (``mincore(2)`` of a private
    mapping that is never touched)."""
    mincore = _mincore()
    size = path.stat().st_size
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    with path.open("rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mm:
        address = ctypes.addressof(ctypes.c_char.from_buffer(mm))
        vec = (ctypes.c_ubyte * pages)()
        if mincore(ctypes.c_void_p(address), size, vec) != 0:
            raise OSError(ctypes.get_errno(), "mincore failed")
        return sum(v & 1 for v in vec)


def drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # only clean pages can be dropped
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


#: messages of ~1 KB in the snapshot the next test drops from the page cache: ~36 MB,
#: several times the largest readahead a disk here is set up for (8 MiB on a VM's virtio
#: disk, ``/sys/block/vda/queue/read_ahead_kb``)
DROPPED_MESSAGES = 36_000


async def test_a_load_whose_pages_left_the_page_cache_is_read_in_the_io_thread(
    root: Path,
) -> None:
    n = DROPPED_MESSAGES
    async with FileStore(root) as store:
        s = store.new_session(session_id="s1")
        s.messages.extend({"role": "user", "content": str(i), "pad": "x" * 900} for i in range(n))
        await store.save(s)
        await checkpoint(store, s, n)
        for _ in range(2):
            assert contents(await store.load("s1")) == expected(n + 1)
        assert loads(store) == (1, 1)
        snapshot = root / "sessions" / "s1.json"
        # A read with RWF_NOWAIT of a page that is not cached starts the kernel's
        # readahead before it returns EAGAIN, and a fast device (a VM's disk backed by
        # the host's cache) can finish that readahead before the read looks at the page
        # again: then the read is served from memory without having waited. A snapshot
        # several readahead windows long cannot be read so in one call (the read comes
        # back short), and the drop is still tried a few times; a store that never falls
        # back to the I/O thread fails.
        for _attempt in range(5):
            before = loads(store)
            drop_from_page_cache(snapshot)
            if cached_pages(snapshot):
                pytest.skip("this file system keeps the file's pages in memory (tmpfs?)")
            assert contents(await store.load("s1")) == expected(n + 1)
            after = loads(store)
            assert after[0] + after[1] == before[0] + before[1] + 1
            if after[1] == before[1] + 1:
                break
        else:
            pytest.fail(
                f"5 loads of a dropped snapshot were all served from the page cache: {after}"
            )
        assert cached_pages(snapshot) > 0  # that read brought it back
        # and loads are served from the page cache again (a read of many megabytes with
        # RWF_NOWAIT may still come back short now and then, e.g. while the kernel moves
        # a page: the store then reads in the I/O thread, which is also right)
        for _attempt in range(5):
            before = loads(store)
            assert contents(await store.load("s1")) == expected(n + 1)
            if loads(store)[0] == before[0] + 1:
                break
        else:
            pytest.fail(f"5 loads after it came back all read in the I/O thread: {loads(store)}")


async def test_loads_racing_saves_see_only_states_that_were_saved(root: Path) -> None:
    """Loads on the loop's thread while checkpoints and compactions run in the I/O
    thread: each load returns the messages of a save that had begun or finished by the
    time the load returned, never a mix (an old snapshot with a newer journal, say)."""
    async with FileStore(root, compact_bytes=2_000) as store:
        s = store.new_session(session_id="s1")
        s.messages.append(msg(0))
        await store.save(s)
        saved = 1  # messages of the last save that returned
        done = False
        seen: set[int] = set()

        async def writer() -> None:
            nonlocal saved, done
            for i in range(1, 200):
                if i % 25 == 0:
                    s.messages.append(msg(i))
                    await store.save(s)  # compacts
                else:
                    await checkpoint(store, s, i)
                saved = i + 1
            done = True

        async def reader() -> None:
            while not done:
                low = saved
                got = contents(await store.load("s1"))
                assert low <= len(got) <= saved + 1
                assert got == expected(len(got))
                seen.add(len(got))
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(writer)
            tg.start_soon(reader)
        assert contents(await store.load("s1")) == expected(200)
        page_cache, io_thread = loads(store)
        assert page_cache > 0 and io_thread > 0
        assert len(seen) > 20


async def test_a_read_only_store_reads_every_load_in_the_io_thread(root: Path) -> None:
    """A read-only store does not own the files: another process may replace them at
    any time, so nothing it read before is trusted."""
    async with FileStore(root) as owner:
        s = owner.new_session(session_id="s1")
        s.messages.extend(msg(i) for i in range(2))
        await owner.save(s)
    async with FileStore(root, read_only=True) as reader:
        for _ in range(3):
            assert contents(await reader.load("s1")) == expected(2)
        assert loads(reader) == (0, 3)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_close_closes_the_descriptors_kept_for_loads(root: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("needs /proc/self/fd to count open descriptors")
    store = FileStore(root)
    async with store:
        before = open_fds()
        for sid in ("a", "b", "c"):
            s = store.new_session(session_id=sid)
            s.messages.append(msg(0))
            await store.save(s)
            await checkpoint(store, s, 1)  # one kept journal (append) descriptor
            await store.load(sid)  # keeps the snapshot's and the journal's
        assert open_fds() == before + 9
    assert open_fds() == before - 1  # and the _lock file's
