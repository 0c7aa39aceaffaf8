"""A hypothesis stateful test: FileStore behaves as MemoryStore (the reference) over
random sequences of append, edit-last, shrink, full save, checkpoint
(``skip_index=True``), delete, reopen with recovery, and crashes between operations
(a leftover temporary file, a torn journal tail, a save that fails half way through
its journal append or compaction and is abandoned as a crashed process would).

Bounded (``max_examples``, ``stateful_step_count``) so that CI stays fast; set
``HYPOTHESIS_PROFILE=long`` for a longer search.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from runtime import FileStore, MemoryStore, Session, StoreError
from runtime.stores import faults

settings.register_profile(
    "ci",
    max_examples=20,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("long", max_examples=500, stateful_step_count=50, deadline=None)

CRASH_STEPS = ("journal_append", "fdatasync", "snapshot_write", "events_file", "rename", "truncate")

texts = st.text(alphabet='abcxyz é\n"\\', max_size=12)


class FileStoreMatchesMemoryStore(RuleBasedStateMachine):
    """Two stores, the same operations; after each step every session loads the same
    from both and both list the same sessions."""

    sids = Bundle("sids")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.Runner()
        self.tmp = tempfile.TemporaryDirectory(prefix="stateful-")
        self.root = Path(self.tmp.name)
        self.memory = MemoryStore()
        self.files = FileStore(self.root)
        self.run(self.memory.open())
        self.run(self.files.open())
        # the working copies of each session, one per store (a store owns its objects)
        self.mem: dict[str, Session] = {}
        self.fil: dict[str, Session] = {}
        self.counter = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run(coro)

    def teardown(self) -> None:
        faults.uninstall()
        self.run(self.files.aclose())
        self.run(self.memory.aclose())
        self.loop.close()
        self.tmp.cleanup()

    # -- operations -----------------------------------------------------------------

    @initialize(target=sids)
    def first_session(self) -> str:
        return self.new_session()

    @rule(target=sids)
    def new_session(self) -> str:
        self.counter += 1
        sid = f"s{self.counter}"
        self.mem[sid] = self.memory.new_session(session_id=sid, title=f"t{sid}")
        self.fil[sid] = self.files.new_session(session_id=sid, title=f"t{sid}")
        return sid

    def _both(self, sid: str, change: Any) -> None:
        change(self.mem[sid])
        change(self.fil[sid])

    @precondition(lambda self: self.mem)
    @rule(sid=sids, contents=st.lists(texts, min_size=1, max_size=4))
    def append(self, sid: str, contents: list[str]) -> None:
        if sid not in self.mem:
            return
        self._both(
            sid,
            lambda s: s.messages.extend({"role": "user", "content": c} for c in contents),
        )

    @rule(sid=sids, text=texts)
    def edit_last(self, sid: str, text: str) -> None:
        if sid not in self.mem or not self.mem[sid].messages:
            return
        self._both(sid, lambda s: s.messages[-1].update(content=text))

    @rule(sid=sids, keep=st.integers(min_value=0, max_value=5))
    def shrink(self, sid: str, keep: int) -> None:
        if sid not in self.mem:
            return
        self._both(sid, lambda s: s.messages.__delitem__(slice(keep, None)))

    @rule(sid=sids, title=texts.filter(str.strip))
    def retitle(self, sid: str, title: str) -> None:
        if sid in self.mem:
            self._both(sid, lambda s: setattr(s, "title", title))

    @rule(sid=sids, skip_index=st.booleans())
    def save(self, sid: str, skip_index: bool) -> None:
        """A full save (``skip_index=False``) or a checkpoint."""
        if sid not in self.mem:
            return
        if skip_index and len(self.stored_messages(sid) or []) > len(self.mem[sid].messages):
            skip_index = False  # a checkpoint never shrinks (the runner only appends)
        self.run(self.memory.save(self.mem[sid], skip_index=skip_index))
        self.run(self.files.save(self.fil[sid], skip_index=skip_index))

    @rule(sid=consumes(sids))
    def delete(self, sid: str) -> None:
        if sid not in self.mem:
            return
        self.run(self.memory.delete(sid))
        self.run(self.files.delete(sid))
        del self.mem[sid], self.fil[sid]

    @rule()
    def reopen(self) -> None:
        """A restart: a new FileStore on the root, recovery on both, the working
        copies loaded again (recovery may restore a backup)."""
        self.run(self.files.aclose())
        self.files = FileStore(self.root)
        self.run(self.files.open())
        self.run(self.memory.recover())
        self.run(self.files.recover())
        self.reload()

    def reload(self) -> None:
        for sid in list(self.mem):
            if not self.is_saved(sid):  # never saved: it died with the process
                del self.mem[sid], self.fil[sid]
                continue
            self.mem[sid] = self.run(self.memory.load(sid))
            self.fil[sid] = self.run(self.files.load(sid))

    @rule(sid=sids)
    def leftover_temp_file(self, sid: str) -> None:
        """A crash after a temporary file was written, before its rename."""
        tmp = self.root / "sessions" / f".{sid}.json.{os.getpid() + 1}.tmp"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(b'{"session_id": "torn", "mess')
        self.reopen()
        assert not tmp.exists(), "recovery left a temporary file"

    @rule(sid=sids, junk=st.sampled_from([b'{"gen": 1, "ba', b"\x00\xff", b"{}\n{"]))
    def torn_journal_tail(self, sid: str, junk: bytes) -> None:
        """A crash in the middle of a journal append: the torn tail is never applied."""
        journal = self.root / "sessions" / f"{sid}.journal"
        if journal.exists():
            with journal.open("ab") as f:
                f.write(junk)
        self.reopen()

    @rule(sid=sids, step=st.sampled_from(CRASH_STEPS), skip_index=st.booleans())
    def crash_during_save(self, sid: str, step: str, skip_index: bool) -> None:
        """The save fails at ``step`` and the process is gone: the file store holds
        the state before the save or the one after it, never a torn one."""
        if sid not in self.mem:
            return
        old = self.stored_state(sid)
        new = ([dict(m) for m in self.fil[sid].messages], self.fil[sid].title)
        if skip_index and len(old[0] if old else []) > len(new[0]):
            skip_index = False
        with faults.inject("EIO", step, path_contains=sid), contextlib.suppress(StoreError):
            self.run(self.files.save(self.fil[sid], skip_index=skip_index))
        self.run(self.files.aclose())
        self.files = FileStore(self.root)
        self.run(self.files.open())
        try:
            loaded = self.run(self.files.load(sid))
            got: Any = (loaded.messages, loaded.title)
        except LookupError:
            got = None
        assert got in (old, new), f"torn state after a crash at {step}"
        if got == new:  # the save landed: the reference takes it too
            self.run(self.memory.save(self.mem[sid], skip_index=skip_index))
        # else the reference keeps its state before the save (none for a new session)
        self.run(self.memory.recover())
        self.run(self.files.recover())
        self.reload()

    # -- the reference and the invariant ----------------------------------------------

    def is_saved(self, sid: str) -> bool:
        return sid in self.memory.sessions

    def stored_state(self, sid: str) -> tuple[list[dict[str, Any]], str] | None:
        if not self.is_saved(sid):
            return None
        s = self.run(self.memory.load(sid))
        return s.messages, s.title

    def stored_messages(self, sid: str) -> list[dict[str, Any]] | None:
        try:
            return self.run(self.memory.load(sid)).messages if self.is_saved(sid) else None
        except LookupError:
            return None

    @invariant()
    def same_sessions(self) -> None:
        mem_ids = self.listed(self.memory)
        assert self.listed(self.files) == mem_ids
        for sid in mem_ids | set(self.memory.sessions):
            m = self.run(self.memory.load(sid))
            f = self.run(self.files.load(sid))
            assert f.messages == m.messages, sid
            assert f.title == m.title, sid

    def listed(self, store: Any) -> set[str]:
        page = self.run(store.list_sessions(limit=1000))
        return {s.session_id for s in page.sessions}


FileStoreMatchesMemoryStore.TestCase.settings = settings.get_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci")
)


def test_filestore_matches_memorystore() -> None:
    FileStoreMatchesMemoryStore.TestCase().runTest()
