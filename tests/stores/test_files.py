"""FileStore's on-disk facts: which files exist, what bytes they hold, and what a fresh
instance on the same root reads back after checkpoints, crashes and recovery.

Every test uses a real directory under ``tmp_path``; the lock and crash tests use real
subprocesses (the crash test SIGKILLs them). The backend-independent rules are checked
by the conformance suite (tests/stores/test_conformance.py); this file does not repeat them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from runtime import (
    EmptyOverwriteRefused,
    Event,
    InvalidSessionId,
    MetadataOnlySaveError,
    Session,
    SessionNotFound,
    StoreError,
    StoreLocked,
)
from runtime.stores import faults
from runtime.stores.abc import SaveDelta, Store
from runtime.stores.files import FileStore

ROOT = Path(__file__).resolve().parents[2]  # the checkout: runtime/ lives here
ADMIN_FILES = {"_README", "_lock", "_index.jsonl"}


# -- helpers ---------------------------------------------------------------------------


def msg(i: int, pad: int = 0) -> dict[str, Any]:
    """Message number ``i``: its content is ``str(i)`` (plus optional padding)."""
    return {"role": "user" if i % 2 == 0 else "assistant", "content": str(i), "pad": "x" * pad}


def msgs(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [msg(i) for i in range(start, start + n)]


def sdir(root: Path) -> Path:
    return root / "sessions"


def names(root: Path) -> set[str]:
    return {p.name for p in sdir(root).iterdir()}


def dir_bytes(root: Path) -> dict[str, bytes]:
    """Every file of the store directory and its bytes."""
    return {p.name: p.read_bytes() for p in sdir(root).iterdir() if p.is_file()}


def read_json(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def index_rows(root: Path) -> list[dict[str, Any]]:
    """The rows of ``_index.jsonl`` in file order (its snapshot's, then its log's),
    read by the layout its module docstring gives: a format 2 snapshot's header line
    is followed by its binary columns (ids, N + 1 id offsets, N updated_at doubles,
    N + 1 row offsets)."""
    data = (sdir(root) / "_index.jsonl").read_bytes()
    if data.startswith(b'{"index_format":2,'):
        end = data.index(b"\n")
        head = orjson.loads(data[:end])
        data = data[end + 1 + head["ids_bytes"] + 24 * head["rows"] + 16 :]
    lines = data.splitlines()
    return [row for row in map(orjson.loads, lines) if "session_id" in row]


def append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def contents(session: Session) -> list[str]:
    return [m["content"] for m in session.messages]


async def load_fresh(root: Path, session_id: str) -> Session:
    """Load with a new FileStore instance (nothing cached): what a restart would read."""
    async with FileStore(root) as store:
        return await store.load(session_id)


async def listed(store: Store) -> dict[str, int]:
    page = await store.list_sessions(limit=1000)
    return {s.session_id: s.message_count for s in page.sessions}


async def snapshot_and_checkpoint(store: FileStore, title: str) -> Session:
    """A new session of two messages: ``msg(0)`` in its snapshot (a full save), ``msg(1)``
    in its journal (a checkpoint)."""
    s = store.new_session(title=title)
    s.messages.append(msg(0))
    await store.save(s)
    s.messages.append(msg(1))
    await store.save(s, skip_index=True)
    return s


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
async def store(root: Path) -> AsyncIterator[FileStore]:
    s = FileStore(root)
    async with s:
        yield s


# -- new sessions ----------------------------------------------------------------------


async def test_new_sessions_write_no_file_until_first_save(store: FileStore, root: Path) -> None:
    sessions = [store.new_session(title=f"s{i}") for i in range(5)]
    assert names(root) <= ADMIN_FILES, "new sessions must not create files"
    index_before = (sdir(root) / "_index.jsonl").read_bytes()

    loaded = await store.load(sessions[2].session_id)  # loadable by id before any save
    assert loaded.session_id == sessions[2].session_id
    assert loaded.title == "s2"
    assert loaded.messages == []
    assert names(root) <= ADMIN_FILES
    assert (sdir(root) / "_index.jsonl").read_bytes() == index_before

    first = sessions[0]
    first.messages.append(msg(0))
    await store.save(first)
    assert names(root) - ADMIN_FILES == {f"{first.session_id}.json", f"{first.session_id}.journal"}


# -- full saves and checkpoints -------------------------------------------------------


async def test_full_save_writes_valid_json_atomically(store: FileStore, root: Path) -> None:
    s = store.new_session(title="full", model="m1", metadata={"k": [1, 2]})
    s.messages.extend(msgs(3))
    await store.save(s)

    assert not [n for n in names(root) if n.endswith(".tmp")], "temp file left behind"
    body = read_json(sdir(root) / f"{s.session_id}.json")
    assert body["session_id"] == s.session_id
    assert body["title"] == "full"
    assert body["model"] == "m1"
    assert body["metadata"] == {"k": [1, 2]}
    assert body["updated_at"] == s.updated_at
    assert body["messages"] == msgs(3)
    assert body["message_count"] == 3
    assert (sdir(root) / f"{s.session_id}.journal").read_bytes() == b""
    rows = [r for r in index_rows(root) if r["session_id"] == s.session_id]
    assert rows[-1]["message_count"] == 3
    assert rows[-1]["title"] == "full"


async def test_full_save_replaces_the_snapshot_by_rename(store: FileStore, root: Path) -> None:
    """Temp file + rename: the previous snapshot's inode is never written in place, so a
    crash mid-write cannot tear it (a hard link keeps the old inode visible)."""
    s = store.new_session(title="rename")
    s.messages.extend(msgs(3))
    await store.save(s)
    snap = sdir(root) / f"{s.session_id}.json"
    old_bytes = snap.read_bytes()
    keep = root / "old-snapshot-link"
    os.link(snap, keep)

    s.messages.append(msg(3))
    await store.save(s)
    assert keep.read_bytes() == old_bytes, "the snapshot was rewritten in place"
    assert snap.stat().st_ino != keep.stat().st_ino
    assert read_json(snap)["messages"] == msgs(4)
    assert not [n for n in names(root) if n.endswith(".tmp")]


async def test_skip_index_save_appends_to_journal_only(store: FileStore, root: Path) -> None:
    s = store.new_session(title="cp")
    s.messages.extend(msgs(2))
    await store.save(s)
    snap = sdir(root) / f"{s.session_id}.json"
    journal = sdir(root) / f"{s.session_id}.journal"
    snap_before = snap.read_bytes()
    index_before = (sdir(root) / "_index.jsonl").read_bytes()

    sizes = []
    for i in range(2, 5):
        s.messages.append(msg(i))
        await store.save(s, skip_index=True, delta=SaveDelta.appended(i))
        sizes.append(journal.stat().st_size)

    assert sizes == sorted(sizes) and sizes[0] > 0 and len(set(sizes)) == 3  # appended, grows
    lines = journal.read_bytes().splitlines()
    assert len(lines) == 3
    records = [orjson.loads(line) for line in lines]
    assert [r["messages"] for r in records] == [[msg(2)], [msg(3)], [msg(4)]]
    assert [r["base"] for r in records] == [2, 3, 4]
    assert all("meta" not in r for r in records), "the delta named no changed field"
    assert snap.read_bytes() == snap_before, "a checkpoint must not rewrite the snapshot"
    assert (sdir(root) / "_index.jsonl").read_bytes() == index_before


async def test_journal_line_holds_what_the_delta_names(store: FileStore, root: Path) -> None:
    """Without a delta a checkpoint rewrites the last stored message and every field
    (either may have changed in place); with one, only what it names."""
    s = store.new_session(title="cp")
    s.messages.extend(msgs(2))
    await store.save(s)
    journal = sdir(root) / f"{s.session_id}.journal"

    s.messages[-1]["content"] = "edited in place"
    s.messages.append(msg(2))
    await store.save(s, skip_index=True)
    s.messages[-1]["content"] = "edited again"
    s.title = "renamed"
    await store.save(s, skip_index=True, delta=SaveDelta(3, 2, frozenset({"title"})))

    first, second = (orjson.loads(line) for line in journal.read_bytes().splitlines())
    assert first["base"] == 1 and [m["content"] for m in first["messages"]] == [
        "edited in place",
        "2",
    ]
    assert first["meta"]["title"] == "cp" and "workspace" in first["meta"]
    assert second["base"] == 2 and [m["content"] for m in second["messages"]] == ["edited again"]
    assert second["meta"] == {"title": "renamed"}
    await store.aclose()
    async with FileStore(root) as again:
        loaded = await again.load(s.session_id)
    assert loaded.to_dict() == s.to_dict()


JOURNALS = {
    # appends only: the journal a runner's checkpoints usually leave
    "appends": ["append", "append", "append"],
    "appends-with-events": ["append", "append+events", "append", "append+events"],
    "only-events": ["events", "append+events"],
    # a record that rewrites the last message or changes fields, among appends
    "rewrite-last": ["append", "rewrite", "append"],
    "field-change": ["append", "rename", "append+events"],
    "two-messages-at-once": ["append", "append2", "append"],
}


@pytest.mark.parametrize("kinds", list(JOURNALS.values()), ids=list(JOURNALS))
async def test_a_journal_of_any_mix_of_checkpoints_loads_as_saved(
    root: Path, kinds: list[str]
) -> None:
    """Every kind of checkpoint record, alone and mixed, loads back as the session that
    was saved: through a store that never saw it (the I/O thread's read) and again
    through the same store (the page-cache read), with the stream's events intact."""
    async with FileStore(root) as store:
        s = await started_stream(store, 3)
        sid = s.session_id
        seq = 1
        for kind in kinds:
            base = len(s.messages)
            events = []
            if "events" in kind:
                seq += 1
                events = [ev(seq, "stream-a", sid)]
            if kind.startswith("append"):
                s.messages.extend(msgs(2 if kind == "append2" else 1, base))
                delta = SaveDelta.appended(base)
            elif kind == "rewrite":
                s.messages[-1] = {"role": "assistant", "content": "rewritten"}
                delta = SaveDelta(base, base - 1)
            elif kind == "rename":
                s.title = "renamed"
                delta = SaveDelta(base, base, frozenset({"title"}))
            else:
                delta = SaveDelta.appended(base)
            await store.save(s, skip_index=True, events=events, delta=delta)
    async with FileStore(root) as again:
        first = await again.load(sid)
        second = await again.load(sid)
        stats = again.statistics()
        if hasattr(os, "RWF_NOWAIT"):  # preadv2(RWF_NOWAIT): Linux only
            assert (stats["loads_page_cache"], stats["loads_io_thread"]) == (1, 1)
        got = await again.load_events(sid, "stream-a")
    assert first.to_dict() == s.to_dict()
    assert second.to_dict() == s.to_dict()
    assert [e.seq for e in got] == list(range(1, seq + 1))


@pytest.mark.parametrize("skip_index", [False, True], ids=["full", "checkpoint"])
async def test_touch_updated_at_false_keeps_updated_at(root: Path, skip_index: bool) -> None:
    async with FileStore(root) as store:
        s = store.new_session(title="t")
        s.messages.append(msg(0))
        await store.save(s)
        s.updated_at = 1234.5
        s.messages.append(msg(1))
        await store.save(s, skip_index=skip_index, touch_updated_at=False)
        assert s.updated_at == 1234.5
    again = await load_fresh(root, s.session_id)
    assert again.updated_at == 1234.5
    assert contents(again) == ["0", "1"]


# -- metadata-only objects, backups, empty overwrite -----------------------------------


async def test_metadata_only_save_changes_no_byte(store: FileStore, root: Path) -> None:
    s = store.new_session(title="meta")
    s.messages.extend(msgs(3))
    await store.save(s)
    s.messages.append(msg(3))
    await store.save(s, skip_index=True, events=[ev(1, "st", s.session_id)])
    before = dir_bytes(root)
    assert before.get(f"{s.session_id}.journal"), "the checkpoint left no journal"

    meta = await store.load_metadata(s.session_id)
    meta.title = "renamed"
    for skip_index in (False, True):
        with pytest.raises(MetadataOnlySaveError, match=s.session_id) as info:
            await store.save(meta, skip_index=skip_index)
        assert isinstance(info.value, RuntimeError)
    assert dir_bytes(root) == before
    assert contents(await store.load(s.session_id)) == ["0", "1", "2", "3"]


async def test_shrinking_save_backs_up_journal_messages_too(store: FileStore, root: Path) -> None:
    s = store.new_session(title="shrink")
    bak = sdir(root) / f"{s.session_id}.json.bak"
    s.messages.extend(msgs(5))
    await store.save(s)
    for i in range(5, 7):  # two messages that exist only in the journal
        s.messages.append(msg(i))
        await store.save(s, skip_index=True)
        assert not bak.exists(), "a growing save must leave no backup"

    s.messages = msgs(3)
    await store.save(s)

    held = read_json(bak)
    assert held["messages"] == msgs(7), "the backup must hold the previous state, journal included"
    assert held["session_id"] == s.session_id
    assert contents(await store.load(s.session_id)) == ["0", "1", "2"]


@pytest.mark.parametrize("skip_index", [False, True], ids=["full", "checkpoint"])
async def test_growing_save_removes_backup_once_it_reaches_its_count(
    store: FileStore, root: Path, skip_index: bool
) -> None:
    s = store.new_session(title="grow")
    bak = sdir(root) / f"{s.session_id}.json.bak"
    s.messages.extend(msgs(6))
    await store.save(s)
    s.messages = msgs(2)
    await store.save(s)  # shrink: backup of 6
    assert len(read_json(bak)["messages"]) == 6

    s.messages.extend(msgs(3, start=2))  # 5 < 6: the backup still holds more
    await store.save(s, skip_index=skip_index)
    assert len(read_json(bak)["messages"]) == 6

    s.messages.append(msg(5))  # 6 >= 6: the backup is stale
    await store.save(s, skip_index=skip_index)
    assert not bak.exists()


@pytest.mark.parametrize("pending_on", ["stored", "new"])
async def test_empty_overwrite_while_pending_changes_nothing(
    store: FileStore, root: Path, pending_on: str
) -> None:
    s = store.new_session(title="pending")
    s.messages.extend(msgs(4))
    if pending_on == "stored":
        s.active_stream_id = "stream-1"
        s.pending_user_message = "question"
    await store.save(s)
    before = dir_bytes(root)

    s.messages = []
    if pending_on == "new":
        s.active_stream_id = "stream-2"
    else:
        s.active_stream_id = s.pending_user_message = None
    for skip_index in (False, True):
        with pytest.raises(EmptyOverwriteRefused, match=s.session_id):
            await store.save(s, skip_index=skip_index)
    assert dir_bytes(root) == before
    assert not (sdir(root) / f"{s.session_id}.json.bak").exists()


# -- the journal -----------------------------------------------------------------------


async def test_checkpoints_reload_in_a_fresh_store(root: Path) -> None:
    async with FileStore(root) as store:
        s = store.new_session(title="journal")
        s.messages.append(msg(0))
        await store.save(s)
        for i in range(1, 8):
            s.messages.append(msg(i))
            s.title = f"title {i}"
            await store.save(s, skip_index=True)
        # an in-place change of the last message is persisted by a checkpoint too
        s.messages[-1]["content"] = "7-edited"
        await store.save(s, skip_index=True)
    again = await load_fresh(root, s.session_id)
    assert contents(again) == [*map(str, range(7)), "7-edited"]
    assert again.title == "title 7"


TAILS = {
    "half-json-line": b'{"gen":1,"base":3,"messages":[{"role":"user","cont',
    "garbage": b"\x00\xff\xfegarbage",
    "garbage-line": b"not json at all\n",
}


@pytest.mark.parametrize("tail", list(TAILS), ids=list(TAILS))
async def test_torn_journal_tail_is_ignored(root: Path, tail: str) -> None:
    async with FileStore(root) as store:
        s = store.new_session(title="torn")
        s.messages.append(msg(0))
        await store.save(s)
        for i in range(1, 4):
            s.messages.append(msg(i))
            await store.save(s, skip_index=True)
    append_bytes(sdir(root) / f"{s.session_id}.journal", TAILS[tail])
    again = await load_fresh(root, s.session_id)
    assert contents(again) == ["0", "1", "2", "3"]


async def test_checkpoint_after_torn_tail_is_durable(root: Path) -> None:
    """A crash mid-append leaves a torn tail; the next process's checkpoints must survive."""
    async with FileStore(root) as store:
        s = await snapshot_and_checkpoint(store, "torn")
    append_bytes(sdir(root) / f"{s.session_id}.journal", TAILS["half-json-line"])
    async with FileStore(root) as store:
        s = await store.load(s.session_id)
        s.messages.append(msg(2))
        await store.save(s, skip_index=True)  # returned: acknowledged, durable
    assert contents(await load_fresh(root, s.session_id)) == ["0", "1", "2"]


async def test_a_load_skips_only_the_files_this_store_knows_are_absent(root: Path) -> None:
    """A session this store wrote (or read) since it opened is loaded without opening
    its journal when its last save compacted it, and without probing for a ``.bak``
    none of its saves left; any other load opens both. Each claim is checked by making
    every open of that file fail (EIO): the load succeeds only if it never opens it."""
    async with FileStore(root) as store:
        s = store.new_session(title="known")
        s.messages.extend(msgs(3))
        await store.save(s)  # compacts: an empty journal
        sid = s.session_id
        for suffix in (".journal", ".json.bak"):
            with faults.inject("EIO", "read", times=None, path_contains=suffix) as plan:
                assert contents(await store.load(sid)) == ["0", "1", "2"]
            assert plan.fired == 0, suffix
        s.messages.append(msg(3))
        await store.save(s, skip_index=True, delta=SaveDelta.appended(3))
        with (
            faults.inject("EIO", "read", times=None, path_contains=".journal"),
            pytest.raises(StoreError, match=r"\.journal"),
        ):
            await store.load(sid)  # the journal holds a checkpoint: it is read
        with faults.inject("EIO", "read", times=None, path_contains=".json.bak") as plan:
            assert contents(await store.load(sid)) == ["0", "1", "2", "3"]
        assert plan.fired == 0
    for read_only in (False, True):  # nothing known: both files are opened
        async with FileStore(root, read_only=read_only) as store:
            for suffix in (".journal", ".json.bak"):
                with (
                    faults.inject("EIO", "read", times=None, path_contains=suffix),
                    pytest.raises(StoreError, match=suffix.replace(".", r"\.")),
                ):
                    await store.load(sid)


async def test_a_journal_damaged_under_an_open_store_makes_its_next_save_compact(
    root: Path,
) -> None:
    """A journal line damaged while the store runs (by hand, say) is found by the next
    load even though the store knows the session: the load keeps the lines before it,
    and the next checkpoint compacts instead of appending after the damage, where a
    restart would drop it."""
    async with FileStore(root) as store:
        s = store.new_session(title="damaged")
        s.messages.extend(msgs(2))
        await store.save(s)
        for i in (2, 3):
            s.messages.append(msg(i))
            await store.save(s, skip_index=True, delta=SaveDelta.appended(i))
        journal = sdir(root) / f"{s.session_id}.journal"
        second = journal.read_bytes().splitlines(keepends=True)[1]
        journal.write_bytes(b"not json\n" + second)
        again = await store.load(s.session_id)
        assert contents(again) == ["0", "1"]
        again.messages.append(msg(4))
        await store.save(again, skip_index=True, delta=SaveDelta.appended(2))
        assert journal.read_bytes() == b"", "the checkpoint appended after the damage"
    assert contents(await load_fresh(root, s.session_id)) == ["0", "1", "4"]


async def test_journal_lines_of_an_older_generation_are_ignored(root: Path) -> None:
    async with FileStore(root) as store:
        s = store.new_session(title="gen")
        s.messages.extend(msgs(2))
        await store.save(s)
        for i in range(2, 5):
            s.messages.append(msg(i))
            await store.save(s, skip_index=True)
        journal = sdir(root) / f"{s.session_id}.journal"
        old_lines = journal.read_bytes()
        assert old_lines.count(b"\n") == 3

        s.messages.append(msg(5))
        await store.save(s)  # full save: next generation, journal emptied
        assert journal.read_bytes() == b""
        assert read_json(sdir(root) / f"{s.session_id}.json")["messages"] == msgs(6)
    append_bytes(journal, old_lines)  # e.g. a crash between rename and truncate

    again = await load_fresh(root, s.session_id)
    assert contents(again) == [str(i) for i in range(6)], "old-generation lines were applied"


@pytest.mark.parametrize("history", [10, 2_000])
async def test_checkpoint_cost_is_new_data_not_history(
    store: FileStore, root: Path, history: int
) -> None:
    s = store.new_session(title="cost")
    s.messages.extend(msg(i, pad=100) for i in range(history))
    await store.save(s)
    snap = sdir(root) / f"{s.session_id}.json"
    journal = sdir(root) / f"{s.session_id}.journal"
    snap_size = snap.stat().st_size
    for i in range(history, history + 5):
        new = msg(i, pad=300)
        before = journal.stat().st_size
        s.messages.append(new)
        await store.save(s, skip_index=True)
        grown = journal.stat().st_size - before
        assert 0 < grown < 3 * len(orjson.dumps(new)), (history, grown)
        assert snap.stat().st_size == snap_size


# -- the checkpoint hop: kept journal descriptors, failures, cancellation ---------------


def journal_lines(root: Path, session_id: str) -> list[dict[str, Any]]:
    """Every line of the journal, each a whole JSON object (a torn line fails here)."""
    data = (sdir(root) / f"{session_id}.journal").read_bytes()
    assert not data or data.endswith(b"\n"), f"torn journal tail: {data[-60:]!r}"
    return [orjson.loads(line) for line in data.splitlines()]


def read_back(root: Path, session_id: str) -> Session:
    """What a restart would read, while the store stays open: parse the files directly."""
    snap = read_json(sdir(root) / f"{session_id}.json")
    messages = snap["messages"]
    for rec in journal_lines(root, session_id):
        if rec["gen"] == snap["gen"]:
            del messages[rec["base"] :]
            messages.extend(rec["messages"])
    return Session(session_id, messages=messages)


async def test_checkpoints_follow_the_journal_through_compaction_and_delete(root: Path) -> None:
    """The journal descriptor kept between checkpoints must never outlive its file: after
    a full save (journal emptied) and after delete + re-create of the same id (a new
    journal inode), the next checkpoint lands in the journal a fresh store reads. (Delete
    and compaction each drop the kept descriptor; either one alone keeps this test green.)"""
    async with FileStore(root) as store:
        s = store.new_session(session_id="kept", title="fd")
        s.messages.append(msg(0))
        await store.save(s)
        for i in range(1, 3):
            s.messages.append(msg(i))
            await store.save(s, skip_index=True)
        s.messages.append(msg(3))
        await store.save(s)  # compaction: journal emptied
        s.messages.append(msg(4))
        await store.save(s, skip_index=True)
        assert [rec["messages"][-1] for rec in journal_lines(root, "kept")] == [msg(4)]
        assert contents(read_back(root, "kept")) == list("01234")

        await store.delete("kept")
        s = store.new_session(session_id="kept", title="again")
        s.messages.append(msg(10))
        await store.save(s)
        s.messages.append(msg(11))
        await store.save(s, skip_index=True)
        assert [rec["messages"][-1] for rec in journal_lines(root, "kept")] == [msg(11)]
    assert contents(await load_fresh(root, "kept")) == ["10", "11"]


async def test_failed_checkpoint_write_makes_the_next_save_compact(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails half way (disk full) may leave part of a line in the journal;
    an append glued to that fragment would be unreadable, so the next save must rewrite
    the session instead. A full disk cannot be produced here on demand: the short write
    followed by ENOSPC is faked by patching the store's write helper for one call."""
    from runtime.stores import _fileio

    async with FileStore(root) as store:
        s = store.new_session(session_id="full", title="enospc")
        s.messages.append(msg(0))
        await store.save(s)
        s.messages.append(msg(1))
        await store.save(s, skip_index=True)

        real_write_durable = _fileio.write_durable

        def short_write(fd: int, data: bytes) -> None:
            monkeypatch.setattr(_fileio, "write_durable", real_write_durable)
            os.write(fd, data[: len(data) // 2])
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(_fileio, "write_durable", short_write)
        s.messages.append(msg(2))
        with pytest.raises(StoreError, match=r"full\.journal: No space left on device \(ENOSPC\)"):
            await store.save(s, skip_index=True)
        journal = sdir(root) / "full.journal"
        assert not journal.read_bytes().endswith(b"\n"), "the fake left no torn fragment"

        s.messages.append(msg(3))
        await store.save(s, skip_index=True)  # compacts: snapshot rewritten, journal emptied
        assert journal.read_bytes() == b""
        assert read_json(sdir(root) / "full.json")["messages"] == msgs(4)
        s.messages.append(msg(4))
        await store.save(s, skip_index=True)  # and checkpoints append again afterwards
        assert len(journal_lines(root, "full")) == 1
    assert contents(await load_fresh(root, "full")) == list("01234")


@pytest.mark.parametrize("step", ["fsync", "truncate", "dir_fsync"])
@pytest.mark.parametrize("with_delta", [False, True], ids=["checkpoint", "delta"])
async def test_a_checkpoint_after_a_failed_full_save_is_durable(
    root: Path, step: str, with_delta: bool
) -> None:
    """A full save can fail after its new snapshot was renamed into place (emptying the
    journal or the directory fsync fails: EIO injected there), or before (the temp file's
    fsync). Either way the next checkpoint must land where a restart reads it: not as a
    journal line of the old generation, which the new snapshot ignores."""
    async with FileStore(root) as store:
        s = await snapshot_and_checkpoint(store, "failed compaction")
        s.messages.append(msg(2))
        where = "" if step == "dir_fsync" else s.session_id  # the directory names no session
        with (
            faults.inject("EIO", step, path_contains=where) as plan,
            pytest.raises(StoreError, match="Input/output error"),
        ):
            await store.save(s)
        assert plan.fired == 1
        s.messages.append(msg(3))
        stored = 2 if step == "fsync" else 3  # what the store holds after the failure
        delta = SaveDelta.appended(stored) if with_delta else None
        await store.save(s, skip_index=True, delta=delta)  # acknowledged: durable
    assert contents(await load_fresh(root, s.session_id)) == ["0", "1", "2", "3"]


@pytest.mark.parametrize("how", ["cancel-scope", "task.cancel"])
async def test_cancelled_checkpoint_finishes_its_line_before_it_raises(
    root: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A checkpoint cancelled while its line is being synced returns (cancelled) only
    once the line is whole and synced, so the session lock never lets the next append
    follow a half-written line. A slow disk is faked: ``fdatasync`` waits on an event,
    so that the cancellation provably lands while the append is in the I/O thread
    (and so does ``pwritev``, which makes the line durable in one call where the kernel
    has ``RWF_DSYNC``)."""
    in_sync, release = threading.Event(), threading.Event()
    real_fdatasync, real_pwritev = os.fdatasync, os.pwritev

    def slow_fdatasync(fd: int) -> None:
        in_sync.set()
        release.wait(10)
        real_fdatasync(fd)

    def slow_pwritev(fd: int, buffers: Any, offset: int, flags: int = 0) -> int:
        in_sync.set()
        release.wait(10)
        return real_pwritev(fd, buffers, offset, flags)

    async with FileStore(root) as store:
        s = store.new_session(session_id="cancel", title="c")
        s.messages.append(msg(0))
        await store.save(s)
        monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
        monkeypatch.setattr(os, "pwritev", slow_pwritev)
        s.messages.append(msg(1))
        outcome: list[str] = []
        if how == "cancel-scope":
            async with anyio.create_task_group() as tg:
                scope = anyio.CancelScope()

                async def checkpoint() -> None:
                    with scope:
                        await store.save(s, skip_index=True)
                        outcome.append("returned")
                    outcome.append("cancelled")

                tg.start_soon(checkpoint)
                await anyio.to_thread.run_sync(in_sync.wait, 10)
                scope.cancel()
                await anyio.sleep(0.05)
                assert outcome == [], "the cancelled checkpoint left before its line was synced"
                release.set()
            assert outcome == ["cancelled"]
        else:
            task = asyncio.ensure_future(store.save(s, skip_index=True))
            await anyio.to_thread.run_sync(in_sync.wait, 10)
            task.cancel()
            await asyncio.sleep(0.05)
            assert not task.done(), "the cancelled checkpoint left before its line was synced"
            release.set()
            with pytest.raises(asyncio.CancelledError):
                await task
        monkeypatch.setattr(os, "fdatasync", real_fdatasync)
        assert [rec["messages"][-1] for rec in journal_lines(root, "cancel")] == [msg(1)]
        s.messages.append(msg(2))
        await store.save(s, skip_index=True)
        assert [rec["messages"][-1] for rec in journal_lines(root, "cancel")] == [msg(1), msg(2)]
    assert contents(await load_fresh(root, "cancel")) == ["0", "1", "2"]


def open_fds() -> int | None:
    """How many descriptors this process has open (``None`` without ``/proc``)."""
    fd_dir = Path("/proc/self/fd")
    return len(list(fd_dir.iterdir())) if fd_dir.is_dir() else None


async def test_close_stops_the_io_thread_and_closes_kept_descriptors(root: Path) -> None:
    if open_fds() is None:
        pytest.skip("needs /proc/self/fd to count open descriptors")
    store = FileStore(root)
    async with store:
        before = open_fds()
        assert before is not None
        for sid in ("a", "b", "c"):
            s = store.new_session(session_id=sid)
            s.messages.append(msg(0))
            await store.save(s)
            s.messages.append(msg(1))
            await store.save(s, skip_index=True)
        assert open_fds() == before + 3  # one kept journal per session
        thread = store._io._thread
        assert thread is not None and thread.is_alive()
    thread.join(10)
    assert not thread.is_alive()
    assert open_fds() == before - 1  # and the _lock file's descriptor is closed too


# -- recover() -------------------------------------------------------------------------


def bak_body(session_id: str, n: int, title: str = "from backup") -> bytes:
    """A ``.bak`` file as FileStore writes it: the session's fields and messages."""
    s = Session(session_id, title=title, messages=msgs(n), updated_at=1000.0)
    return orjson.dumps(s.to_dict())


async def test_recover_restores_live_file_with_fewer_messages(root: Path) -> None:
    async with FileStore(root) as store:
        s = store.new_session(title="live")
        s.messages.extend(msgs(3))
        await store.save(s)
    (sdir(root) / f"{s.session_id}.json.bak").write_bytes(bak_body(s.session_id, 6))

    async with FileStore(root) as store:
        report = await store.recover()
        assert report == {"scanned": 1, "restored": 1, "orphaned_backups": 0, "quarantined": 0}
        assert contents(await store.load(s.session_id)) == [str(i) for i in range(6)]
        assert await listed(store) == {s.session_id: 6}
    assert not (sdir(root) / f"{s.session_id}.json.bak").exists()
    assert {r["session_id"]: r["message_count"] for r in index_rows(root)} == {s.session_id: 6}
    assert contents(await load_fresh(root, s.session_id)) == [str(i) for i in range(6)]


async def test_recover_keeps_live_file_that_has_more_messages(root: Path) -> None:
    async with FileStore(root) as store:
        s = store.new_session(title="live")
        s.messages.extend(msgs(5))
        await store.save(s)
    (sdir(root) / f"{s.session_id}.json.bak").write_bytes(bak_body(s.session_id, 2))
    async with FileStore(root) as store:
        assert await store.recover() == {
            "scanned": 1,
            "restored": 0,
            "orphaned_backups": 0,
            "quarantined": 0,
        }
        assert contents(await store.load(s.session_id)) == [str(i) for i in range(5)]


async def test_recover_recreates_session_from_orphan_backup(root: Path) -> None:
    async with FileStore(root):
        pass
    sid = "orphan01"
    (sdir(root) / f"{sid}.json.bak").write_bytes(bak_body(sid, 4, title="lost"))

    async with FileStore(root) as store:
        assert await store.recover() == {
            "scanned": 1,
            "restored": 1,
            "orphaned_backups": 1,
            "quarantined": 0,
        }
        restored = await store.load(sid)
        assert restored.title == "lost"
        assert contents(restored) == ["0", "1", "2", "3"]
        assert await listed(store) == {sid: 4}
    assert {f"{sid}.json"} <= names(root)
    assert f"{sid}.json.bak" not in names(root)


async def test_recover_never_treats_underscore_files_as_sessions(root: Path) -> None:
    async with FileStore(root) as store:
        s = store.new_session(title="real")
        s.messages.extend(msgs(2))
        await store.save(s)
    d = sdir(root)
    (d / "_index.json").write_bytes(orjson.dumps([{"session_id": "x", "messages": []}]))
    (d / "_foo.json").write_bytes(bak_body("_foo", 3))
    (d / "_bar.json.bak").write_bytes(bak_body("_bar", 3))
    (d / "_index.jsonl").unlink()  # force a rebuild from the directory on open
    planted = {n: (d / n).read_bytes() for n in ("_index.json", "_foo.json", "_bar.json.bak")}

    async with FileStore(root) as store:
        assert await store.recover() == {
            "scanned": 1,
            "restored": 0,
            "orphaned_backups": 0,
            "quarantined": 0,
        }
        assert await listed(store) == {s.session_id: 2}
    for name, data in planted.items():
        assert (d / name).read_bytes() == data, f"{name} was touched"
    assert "_bar.json" not in names(root)


async def test_recover_never_resurrects_a_deleted_session(root: Path) -> None:
    async with FileStore(root) as store:
        s = store.new_session(title="doomed")
        s.messages.extend(msgs(3))
        await store.save(s)
        snapshot = (sdir(root) / f"{s.session_id}.json").read_bytes()
        await store.delete(s.session_id)
    assert not {n for n in names(root) if n.startswith(s.session_id)}
    (sdir(root) / f"{s.session_id}.json.bak").write_bytes(snapshot)  # put a backup back by hand

    async with FileStore(root) as store:
        assert await store.recover() == {
            "scanned": 0,
            "restored": 0,
            "orphaned_backups": 0,
            "quarantined": 0,
        }
        with pytest.raises(SessionNotFound):
            await store.load(s.session_id)
        assert await listed(store) == {}
    assert f"{s.session_id}.json" not in names(root)


async def test_recover_is_a_noop_on_a_clean_store(root: Path) -> None:
    async with FileStore(root) as store:
        for n in (1, 2, 3):
            s = store.new_session(title=f"s{n}")
            s.messages.extend(msgs(n))
            await store.save(s)
            s.messages.append(msg(n))
            await store.save(s, skip_index=True)
        before = dir_bytes(root)
        assert await store.recover() == {
            "scanned": 3,
            "restored": 0,
            "orphaned_backups": 0,
            "quarantined": 0,
        }
        assert dir_bytes(root) == before
    async with FileStore(root) as store:
        assert await store.recover() == {
            "scanned": 3,
            "restored": 0,
            "orphaned_backups": 0,
            "quarantined": 0,
        }
    after = dir_bytes(root)
    del after["_lock"], before["_lock"]  # they hold the owner's pid
    assert after == before


@pytest.mark.parametrize("damage", ["missing", "corrupt-middle", "not-objects"])
async def test_index_is_rebuilt_on_open(root: Path, damage: str) -> None:
    async with FileStore(root) as store:
        ids = []
        for n in (1, 2):
            s = store.new_session(title=f"s{n}")
            s.messages.extend(msgs(n))
            await store.save(s)
            ids.append(s.session_id)
        s.messages.append(msg(9))
        await store.save(s, skip_index=True)  # the index row is stale; rebuild reads the journal
    index = sdir(root) / "_index.jsonl"
    if damage == "missing":
        index.unlink()
    elif damage == "corrupt-middle":
        lines = index.read_bytes().splitlines()
        index.write_bytes(lines[0] + b"\n}}garbage{{\n" + b"\n".join(lines[1:]) + b"\n")
    else:
        index.write_bytes(b"[1, 2, 3]\n")

    async with FileStore(root) as store:
        assert await listed(store) == {ids[0]: 1, ids[1]: 3}
    assert {r["session_id"]: r["message_count"] for r in index_rows(root)} == {
        ids[0]: 1,
        ids[1]: 3,
    }


async def test_index_compaction_racing_saves_loses_no_row(root: Path) -> None:
    """Rounds of concurrent full saves of 300 sessions: their index appends run on the
    store's I/O thread and anyio's worker threads at once, and the log grows past the
    compaction threshold while other appends are in flight. A fresh store (which reads
    only ``_index.jsonl``) lists every session with the count of its last save."""
    expected: dict[str, int] = {}
    async with FileStore(root) as store:
        sessions = [store.new_session(title=f"t{i}") for i in range(300)]

        async def grow(s: Session, n: int) -> None:
            s.messages.append(msg(n))
            await store.save(s)
            expected[s.session_id] = len(s.messages)

        for n in range(6):
            async with anyio.create_task_group() as tg:
                for s in sessions:
                    tg.start_soon(grow, s, n)
        assert await listed(store) == expected
    head = (sdir(root) / "_index.jsonl").read_bytes().split(b"\n", 1)[0]
    assert orjson.loads(head)["index_format"] == 2, "the log was never compacted"
    async with FileStore(root) as again:
        assert await listed(again) == expected
        assert again.statistics()["sessions_indexed"] == 300


async def test_an_index_append_during_a_compaction_is_kept(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The save that makes the index log long enough compacts it; the compaction is held
    just before its rename while another session's first save runs on a second thread
    and reaches its index append. Both sessions are listed, also by a fresh store."""
    async with FileStore(root) as store:
        limiter = anyio.Semaphore(32)

        async def first_save(s: Session) -> None:
            async with limiter:
                s.messages.append(msg(0))
                await store.save(s)

        async with anyio.create_task_group() as tg:
            for i in range(1024):  # one log line each: the next line compacts
                tg.start_soon(first_save, store.new_session(title=f"t{i}"))

        compacting, release = threading.Event(), threading.Event()
        real_replace = os.replace

        def held_replace(src: Any, dst: Any) -> None:
            if Path(dst).name == "_index.jsonl" and not release.is_set():
                compacting.set()
                release.wait(30)
            real_replace(src, dst)

        monkeypatch.setattr(os, "replace", held_replace)
        one, two = store.new_session(title="one"), store.new_session(title="two")
        async with anyio.create_task_group() as tg:
            tg.start_soon(first_save, one)
            assert await anyio.to_thread.run_sync(compacting.wait, 30)
            tg.start_soon(first_save, two)  # the store's I/O thread is held: another thread
            with anyio.fail_after(30):
                while not (sdir(root) / f"{two.session_id}.json").exists():
                    await anyio.sleep(0.01)
            release.set()
        monkeypatch.setattr(os, "replace", real_replace)
        listed_now = await listed(store)  # the newest 1000: "one" and "two" among them
    async with FileStore(root) as again:
        listed_again = await listed(again)
        assert again.statistics()["sessions_indexed"] == 1026
    for s in (one, two):
        assert listed_now[s.session_id] == listed_again[s.session_id] == 1


async def test_index_snapshot_rows_read_lazily_match_the_saved_ones(root: Path) -> None:
    """After a compaction the rows come from the snapshot (parsed when first listed);
    updates and deletes made after it (the log) override them at the next open."""
    async with FileStore(root) as store:
        sessions = [store.new_session(title=f"t{i}") for i in range(1100)]
        for i, s in enumerate(sessions):
            s.messages.extend(msgs(1 + i % 3))
            await store.save(s, touch_updated_at=False)
        sessions[0].messages.append(msg(7))
        sessions[0].title = "after the snapshot"
        await store.save(sessions[0])
        await store.delete(sessions[1].session_id)
    async with FileStore(root) as again:
        rows = {}
        cursor = None
        while True:
            page = await again.list_sessions(limit=1000, cursor=cursor)
            rows.update({s.session_id: (s.title, s.message_count) for s in page.sessions})
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    want = {s.session_id: (s.title, len(s.messages)) for s in sessions[2:]}
    want[sessions[0].session_id] = ("after the snapshot", 2)
    assert rows == want


async def test_ids_starting_with_underscore_are_refused_before_any_io(root: Path) -> None:
    """FileStore's own files start with '_' (and recovery never treats such names as
    sessions), so a session id starting with '_' is refused instead of vanishing later."""
    async with FileStore(root) as store:
        before = sorted(p.name for p in sdir(root).iterdir())
        with pytest.raises(InvalidSessionId, match="reserves names starting with '_'"):
            store.new_session(session_id="_x", title="underscore id")
        s = Session("_x", title="underscore id")
        with pytest.raises(InvalidSessionId):
            await store.save(s)
        with pytest.raises(InvalidSessionId):
            await store.load("_index")
        assert sorted(p.name for p in sdir(root).iterdir()) == before


# -- events ----------------------------------------------------------------------------


async def test_events_of_a_full_save_whose_snapshot_never_landed_do_not_count(
    root: Path,
) -> None:
    """A crash between the events file's rename and the snapshot's (found by the crash
    torture): the events file says ``done`` while the snapshot still holds the running
    turn. Only the events durable before that save may be replayed, else a client is
    told ``done`` for a turn whose transcript is then repaired as interrupted."""
    async with FileStore(root) as store:
        s = await started_stream(store, 1)
        sid = s.session_id
        await store.save(s, skip_index=True, events=[ev(2, "stream-a", sid)])
        s.active_stream_id = None
        s.messages.append(msg(1))
        with (
            faults.inject("EIO", "rename", path_contains=f"{sid}.json") as plan,
            pytest.raises(StoreError),
        ):
            await store.save(
                s, events=[ev(3, "stream-a", sid, "done"), ev(4, "stream-a", sid, "stream.end")]
            )
        assert plan.fired == 1
    async with FileStore(root) as store:
        assert [e.seq for e in await store.load_events(sid, "stream-a")] == [1, 2]
        s = await store.load(sid)
        assert s.active_stream_id == "stream-a"
        s.active_stream_id = None  # as a stale repair does: a full save, no new events
        await store.save(s, touch_updated_at=False)
    async with FileStore(root) as store:
        assert [e.seq for e in await store.load_events(sid, "stream-a")] == [1, 2]


def ev(seq: int, stream_id: str, session_id: str, type: str = "token") -> Event:
    return Event(seq, stream_id, session_id, type, {"text": f"t{seq}"}, 1000.0 + seq)


async def started_stream(store: FileStore, n: int) -> Session:
    """A new session of ``n`` messages, saved with stream ``stream-a`` started (event 1)."""
    s = store.new_session(title="events")
    s.messages.extend(msgs(n))
    s.active_stream_id = "stream-a"
    await store.save(s, events=[ev(1, "stream-a", s.session_id, "stream.started")])
    return s


async def test_events_survive_restart_and_compaction(root: Path) -> None:
    async with FileStore(root) as store:
        s = await started_stream(store, 1)
        s.messages.append(msg(1))
        await store.save(
            s,
            skip_index=True,
            events=[ev(2, "stream-a", s.session_id), ev(3, "stream-a", s.session_id)],
        )
    sid = s.session_id
    async with FileStore(root) as store:
        got = await store.load_events(sid, "stream-a")
        assert [e.seq for e in got] == [1, 2, 3]
        assert got[1] == ev(2, "stream-a", sid)
        assert [e.seq for e in await store.load_events(sid, "stream-a", after_seq=2)] == [3]
        assert await store.load_events(sid, "other-stream") == []

        s = await store.load(sid)
        s.title = "renamed"
        await store.save(s)  # a full save without events: the journal's events move out
        assert (sdir(root) / f"{sid}.journal").read_bytes() == b""
        assert [e.seq for e in await store.load_events(sid, "stream-a")] == [1, 2, 3]

        s.active_stream_id = None
        await store.save(
            s, events=[ev(4, "stream-a", sid, "done"), ev(5, "stream-a", sid, "stream.end")]
        )
    assert (sdir(root) / f"{sid}.journal").read_bytes() == b""
    lines = (sdir(root) / f"{sid}.events.jsonl").read_bytes().splitlines()
    head = orjson.loads(lines[0])
    # the two tokens are one record (a run: first seq, texts, timestamps); "base" counts
    # the lines durable before the save: stream.started and the run
    assert head == {"stream_id": "stream-a", "id": head["id"], "base": 2}
    assert orjson.loads((sdir(root) / f"{sid}.json").read_bytes())["events_id"] == head["id"]
    records = [orjson.loads(line) for line in lines[1:]]
    assert [r["seq"] for r in records] == [1, 2, 4, 5]
    assert records[1] == {
        "seq": 2,
        "stream_id": "stream-a",
        "session_id": sid,
        "type": "token",
        "texts": ["t2", "t3"],
        "ts": [1002.0, 1003.0],
    }
    async with FileStore(root) as store:
        got = await store.load_events(sid, "stream-a")
        assert [(e.seq, e.type) for e in got] == [
            (1, "stream.started"),
            (2, "token"),
            (3, "token"),
            (4, "done"),
            (5, "stream.end"),
        ]
        # a new stream of the session replaces the durable events of the previous one
        s = await store.load(sid)
        await store.save(s, skip_index=True, events=[ev(1, "stream-b", sid, "stream.started")])
        assert await store.load_events(sid, "stream-a") == []
        assert [e.seq for e in await store.load_events(sid, "stream-b")] == [1]


# -- one process per root --------------------------------------------------------------

OPEN_SCRIPT = """
import sys, anyio
from runtime import FileStore, StoreLocked

async def main() -> None:
    try:
        async with FileStore(sys.argv[1]):
            print("opened")
    except StoreLocked as exc:
        print("StoreLocked:", exc)

anyio.run(main)
"""


def open_in_child(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", OPEN_SCRIPT, str(root)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_second_process_gets_store_locked(root: Path) -> None:
    async with FileStore(root):
        done = await anyio.to_thread.run_sync(open_in_child, root)
        assert done.returncode == 0, done.stderr
        out = done.stdout.strip()
        assert out.startswith("StoreLocked:"), out
        assert str(root) in out
        assert f"pid {os.getpid()}" in out
        assert "one process" in out
        # and in this process, a second instance is refused too (flock per open file)
        with pytest.raises(StoreLocked):
            await FileStore(root).open()
    done = await anyio.to_thread.run_sync(open_in_child, root)
    assert done.stdout.strip() == "opened", done.stdout + done.stderr


# -- crash atomicity -------------------------------------------------------------------

CRASH_SCRIPT = textwrap.dedent(
    """
    import sys, anyio
    from runtime import FileStore, SessionNotFound

    async def main(root: str, sid: str) -> None:
        # a small compact_bytes makes checkpoints compact often: both paths get killed
        async with FileStore(root, compact_bytes=2048) as store:
            try:
                s = await store.load(sid)
            except SessionNotFound:
                s = store.new_session(session_id=sid, title="crash")
            i = len(s.messages)
            print("start", i, flush=True)
            while True:
                if s.messages:
                    s.messages[-1]["done"] = True  # an in-place change of the last message
                s.messages.append({"role": "user", "content": str(i), "pad": "x" * (i % 97)})
                await store.save(s, skip_index=i % 10 != 0)
                i += 1
                print(i, flush=True)  # acknowledged: save() returned

    anyio.run(main, sys.argv[1], sys.argv[2])
    """
)


def crash_round(root: Path, sid: str, rng: random.Random) -> tuple[int, int]:
    """Run the saving child, SIGKILL it at a random moment; returns (start, last ack)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_SCRIPT, str(root), sid],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        first = proc.stdout.readline().split()
        assert first[:1] == ["start"], [*first, proc.stderr.read() if proc.stderr else ""]
        out = [proc.stdout.readline() for _ in range(rng.randint(1, 40))]
        # a random moment, mostly mid-save (the child does nothing else)
        time.sleep(rng.uniform(0, 0.02))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # read through the same buffered file objects: communicate() would skip what
        # readline() already buffered
        out.append(proc.stdout.read())
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, err
    start = int(first[1])
    # only whole lines: one the kill cut short was not acknowledged
    acks = [int(line) for line in "".join(out).splitlines(keepends=True) if line.endswith("\n")]
    assert acks == list(range(start + 1, start + 1 + len(acks))), acks
    return start, (acks[-1] if acks else start)


def test_sigkill_mid_checkpoint_leaves_a_consistent_prefix(root: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    sid = "crash01"
    last_count = 0
    for round_no in range(6):
        start, acked = crash_round(root, sid, rng)
        assert start == last_count, f"seed {seed} round {round_no}: child resumed at {start}"

        async def check(acked: int = acked, round_no: int = round_no) -> int:
            where = f"seed {seed} round {round_no}"
            async with FileStore(root) as store:
                s = await store.load(sid)
                n = len(s.messages)
                assert acked <= n <= acked + 1, f"{where}: {n} messages, {acked} acknowledged"
                for i, m in enumerate(s.messages):
                    assert m["content"] == str(i), f"{where}: message {i} is {m!r}"
                    assert m["pad"] == "x" * (i % 97), f"{where}: message {i} torn"
                    if i < n - 1:
                        assert m.get("done") is True, f"{where}: message {i} lost its edit"
                await store.recover()
            assert not [x for x in names(root) if x.endswith(".tmp")], where
            return n

        last_count = anyio.run(check)


# -- the files a full save leaves ------------------------------------------------------


async def test_recover_after_a_shrink_restores_the_backup_and_leaves_no_stray_files(
    root: Path,
) -> None:
    """By the contract, a shrink is undone at the next recover() (the live file holds fewer
    messages than its .bak); after that and a growing save, only the session's files exist."""
    async with FileStore(root) as store:
        s = store.new_session(title="files")
        s.messages.extend(msgs(4))
        await store.save(s)
        s.messages = msgs(1)
        await store.save(s)
    async with FileStore(root) as store:
        assert (await store.recover())["restored"] == 1
        s = await store.load(s.session_id)
        assert contents(s) == ["0", "1", "2", "3"]
        s.messages.append(msg(4))
        await store.save(s)
    sid = s.session_id
    assert names(root) - ADMIN_FILES == {f"{sid}.json", f"{sid}.journal"}


async def test_a_first_save_as_a_checkpoint_is_listed(root: Path) -> None:
    """Found by the stateful test against MemoryStore: a new session whose first save
    was ``skip_index=True`` was missing from ``list_sessions()`` until a restart."""
    async with FileStore(root) as store:
        s = store.new_session(title="checkpointed first")
        s.messages.append(msg(0))
        await store.save(s, skip_index=True)
        assert [x.session_id for x in (await store.list_sessions()).sessions] == [s.session_id]


async def test_events_written_one_per_line_before_token_runs_still_load(root: Path) -> None:
    """Files written before a run of tokens became one record (every event its own line
    in ``<id>.events.jsonl`` and in a journal record's ``events``) load as the same
    events, from every ``after_seq``; a save appends runs after the old lines."""
    sid = "0123456789abcdef0123456789abcdef"
    sdir(root).mkdir(parents=True)
    fields = {
        "session_id": sid,
        "title": "old",
        "model": None,
        "model_provider": None,
        "workspace": None,
        "created_at": 1000.0,
        "active_stream_id": "st",
        "pending_user_message": None,
        "pending_started_at": None,
        "metadata": {},
        "updated_at": 1001.0,
    }
    old = [ev(1, "st", sid, "stream.started")] + [ev(seq, "st", sid) for seq in range(2, 7)]
    snapshot = dict(fields, message_count=1, format=1, gen=1, events_id="e1", messages=[msg(0)])
    (sdir(root) / f"{sid}.json").write_bytes(orjson.dumps(snapshot))
    head = {"stream_id": "st", "id": "e1", "base": 0}
    lines = [orjson.dumps(head)] + [orjson.dumps(e.to_dict()) for e in old[:3]]
    (sdir(root) / f"{sid}.events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    journal = {
        "gen": 1,
        "base": 1,
        "messages": [],
        "updated_at": 1002.0,
        "stream_id": "st",
        "events": [e.to_dict() for e in old[2:]],  # seq 3 again: an overlapping save
    }
    (sdir(root) / f"{sid}.journal").write_bytes(orjson.dumps(journal) + b"\n")
    async with FileStore(root) as store:
        for after in range(len(old) + 1):
            assert await store.load_events(sid, "st", after) == old[after:]
        s = await store.load(sid)
        new = [ev(seq, "st", sid) for seq in range(7, 10)]
        await store.save(s, events=new)  # a full save: the events file is rewritten
    records = [orjson.loads(line) for line in (sdir(root) / f"{sid}.events.jsonl").open("rb")]
    assert [r["seq"] for r in records[1:]] == [1, 2, 3, 4, 5, 6, 7]  # old lines, then a run
    assert records[-1]["texts"] == ["t7", "t8", "t9"]
    async with FileStore(root) as store:
        for after in range(10):
            assert await store.load_events(sid, "st", after) == (old + new)[after:]


async def all_listed(store: Store, limit: int = 1000) -> list[tuple[str, str, int]]:
    """Every listed session in list order (pages of ``limit``): ``(id, title,
    message_count)``."""
    out: list[tuple[str, str, int]] = []
    cursor = None
    while True:
        page = await store.list_sessions(limit=limit, cursor=cursor)
        out += [(s.session_id, s.title, s.message_count) for s in page.sessions]
        cursor = page.next_cursor
        if cursor is None:
            return out


def index_head(root: Path) -> dict[str, Any] | None:
    """The snapshot header of ``_index.jsonl``, or None when it is only a log."""
    data = (sdir(root) / "_index.jsonl").read_bytes()
    if not data.startswith(b'{"index_format":'):
        return None
    head: dict[str, Any] = orjson.loads(data[: data.index(b"\n")])
    return head


async def fill_for_index(root: Path, n: int) -> list[tuple[str, str, int]]:
    """``n`` sessions and a hidden one (never listed); returns the listing."""
    async with FileStore(root) as store:
        for i in range(n):
            s = store.new_session(title=f"t{i}")
            s.messages.extend(msgs(1 + i % 3))
            await store.save(s)
        await store.save(store.new_session())  # "Untitled", no messages: hidden
        listing = await all_listed(store)
    assert len(listing) == n
    return listing


@pytest.mark.parametrize("old", ["format-1", "log-only"])
async def test_an_index_in_an_older_format_opens_and_is_rewritten_at_its_next_compaction(
    root: Path, old: str
) -> None:
    """Stores written by earlier versions: a format 1 snapshot (its columns as JSON
    arrays) followed by a log, or a log alone. Both list as before; a close with more
    than 1024 log lines compacts the index into the current format, which lists the
    same."""
    want = await fill_for_index(root, 40)
    rows = {r["session_id"]: r for r in index_rows(root)}
    assert len(rows) == 41
    lines = {sid: orjson.dumps(r) + b"\n" for sid, r in rows.items()}
    log = [lines[sid] for sid in rows] * 26  # 1066 lines: the same rows saved again
    if old == "format-1":
        order = sorted(rows, key=lambda sid: (-rows[sid]["updated_at"], sid))
        head = {
            "index_format": 1,
            "ids": order,
            "updated_at": [rows[sid]["updated_at"] for sid in order],
            "lengths": [len(lines[sid]) for sid in order],
        }
        data = b"".join([orjson.dumps(head), b"\n", *(lines[sid] for sid in order), *log])
    else:
        data = b"".join(log)
    (sdir(root) / "_index.jsonl").write_bytes(data)

    async with FileStore(root) as store:
        assert await all_listed(store) == want
        assert store.statistics()["sessions_indexed"] == 41
    head2 = index_head(root)
    assert head2 is not None and head2["index_format"] == 2 and head2["rows"] == 41
    assert sorted(r["session_id"] for r in index_rows(root)) == sorted(rows), "a log is left"
    async with FileStore(root) as store:
        assert await all_listed(store) == want
        assert store.statistics()["sessions_indexed"] == 41


@pytest.mark.parametrize("damage", ["flipped-id-byte", "flipped-updated-at-byte", "truncated"])
async def test_a_damaged_snapshot_column_makes_the_index_rebuilt(
    root: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The snapshot's binary columns carry a CRC-32: a changed byte, or a file cut
    inside them, is found at open and the index is rebuilt from the session files."""
    want = await fill_for_index(root, 5)
    index = sdir(root) / "_index.jsonl"
    index.unlink()
    async with FileStore(root):  # rebuilt from the sessions: a snapshot, no log
        pass
    head = index_head(root)
    assert head is not None and head["rows"] == 6
    good = index.read_bytes()
    data = bytearray(good)
    start = data.index(b"\n") + 1
    if damage == "flipped-id-byte":
        data[start + 3] ^= 0x01  # still a valid id character, another id
    elif damage == "flipped-updated-at-byte":
        data[start + head["ids_bytes"] + 8 * 7 + 8 + 7] ^= 0x40  # the second row's exponent
    else:
        del data[start + head["ids_bytes"] + 4 :]
    index.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="runtime.stores.files"):
        async with FileStore(root) as store:
            assert await all_listed(store) == want
    assert "is corrupt: rebuilding" in caplog.text
    assert index.read_bytes() == good  # rebuilt from the same session files


async def test_pages_merge_the_snapshot_with_the_rows_saved_since(root: Path) -> None:
    """A snapshot of 30 sessions, then saves that move some of them to the front or
    keep their place, a delete and new sessions (the log): pages of 7 list them in
    ``(-updated_at, id)`` order without gaps or repeats, in the store that saved them
    and after a reopen (which replays the log)."""
    await fill_for_index(root, 30)
    (sdir(root) / "_index.jsonl").unlink()
    async with FileStore(root) as store:  # rebuilt: a snapshot of every session
        assert index_head(root) is not None
        ids = [sid for sid, _, _ in await all_listed(store)]
        for sid in ids[::3]:
            s = await store.load(sid)
            s.messages.append(msg(5))
            await store.save(s)
        for sid in ids[2::4]:  # saved since, in place: log rows between snapshot rows
            s = await store.load(sid)
            s.title += " renamed"
            await store.save(s, touch_updated_at=False)
        await store.delete(ids[1])
        kept = [sid for sid in ids if sid != ids[1]]
        for i in range(5):
            s = store.new_session(title=f"new {i}")
            s.messages.append(msg(i))
            await store.save(s)
            kept.append(s.session_id)
        sessions = [await store.load(sid) for sid in kept]
        want = [
            (s.session_id, s.title, s.message_count)
            for s in sorted(sessions, key=lambda s: (-s.updated_at, s.session_id))
            if s.message_count
        ]
        assert len(want) == 34
        assert await all_listed(store, limit=7) == want
    assert index_head(root)["rows"] == 31  # type: ignore[index]  # the log was kept
    async with FileStore(root) as again:
        assert await all_listed(again, limit=7) == want
        assert again.statistics()["sessions_indexed"] == 35
