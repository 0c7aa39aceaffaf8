"""Fault injection at every write and read site of FileStore.

Each site is a named step of :mod:`runtime.stores.faults` (the store's own I/O module
raises the errno there, with the path, as the kernel would); real causes where this
machine allows them: ENOTDIR from a file where the sessions directory should be,
ENOSPC from a small tmpfs, EACCES from chmod (not as root). Every fault must give a
:class:`StoreError` naming the path and the cause, leave the previous durable state
intact and loadable, leave other sessions working, and the next save after the fault
clears must be complete.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from runtime import Event, FileStore, Runtime, Session, SessionNotFound, StoreError
from runtime.stores import faults
from runtime.testing import Reply, Run, WaitFor, scripted_agent

ERRNOS = ("ENOSPC", "EIO", "EACCES", "ENOTDIR")


@pytest.fixture(autouse=True)
def _no_fault_left() -> Iterator[None]:
    yield
    faults.uninstall()


def msg(i: int) -> dict[str, Any]:
    return {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"}


def event(seq: int, sid: str, type: str = "token") -> Event:
    return Event(seq, f"{'a' * 16}.{sid}", sid, type, {"text": f"t{seq}"}, 1000.0 + seq)


async def _prepared(store: FileStore, n: int = 4) -> Session:
    """A session with ``n`` messages, saved in full and once by a checkpoint."""
    s = store.new_session(title="faults")
    s.messages.extend(msg(i) for i in range(n - 1))
    s.active_stream_id = f"{'a' * 16}.{s.session_id}"
    await store.save(s, events=[event(1, s.session_id, "stream.started")])
    s.messages.append(msg(n - 1))
    await store.save(s, skip_index=True, events=[event(2, s.session_id)])
    return s


# -- operations: each mutates ``s`` as the caller would, then hits the store ---------


async def checkpoint(store: FileStore, s: Session) -> None:
    s.messages.append(msg(len(s.messages)))
    await store.save(s, skip_index=True, events=[event(3, s.session_id)])


async def full_save(store: FileStore, s: Session) -> None:
    s.messages.append(msg(len(s.messages)))
    s.active_stream_id = None
    await store.save(s, events=[event(3, s.session_id, "done")])


async def shrink(store: FileStore, s: Session) -> None:
    del s.messages[1:]
    s.active_stream_id = None
    await store.save(s)


async def delete(store: FileStore, s: Session) -> None:
    await store.delete(s.session_id)


async def load(store: FileStore, s: Session) -> None:
    await store.load(s.session_id)  # on a store that has read nothing yet


Op = Callable[[FileStore, Session], Awaitable[None]]

#: (operation, step, whether the step's path names the session)
SITES: list[tuple[Op, str, bool]] = [
    (checkpoint, "journal_append", True),
    (checkpoint, "fdatasync", True),
    (full_save, "snapshot_write", True),
    (full_save, "events_file", True),
    (full_save, "fsync", True),
    (full_save, "rename", True),
    (full_save, "truncate", True),
    (full_save, "dir_fsync", False),
    (full_save, "index", False),
    (shrink, "backup_write", True),
    (delete, "tombstone", False),
    (delete, "unlink", True),
    (load, "read", True),
]


def _site_id(site: tuple[Op, str, bool]) -> str:
    return f"{site[0].__name__}-{site[1]}"


async def _stored(root: Path, sid: str) -> list[dict[str, Any]] | None:
    """The session's messages as a new process would load them (from a copy of the
    files, so the store under test keeps its lock); ``None`` if it does not exist."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "store"
        shutil.copytree(root, copy)
        (copy / "sessions" / "_lock").unlink()
        async with FileStore(copy) as store:
            try:
                return (await store.load(sid)).messages
            except SessionNotFound:
                return None


@pytest.mark.parametrize("code", ERRNOS)
@pytest.mark.parametrize("site", SITES, ids=_site_id)
async def test_fault_at_every_site(tmp_path: Path, site: tuple[Op, str, bool], code: str) -> None:
    op, step, names_session = site
    root = tmp_path / "store"
    store = FileStore(root)
    await store.open()
    try:
        s = await _prepared(store)
        other = await _prepared(store, n=2)
        sid = s.session_id
        before = list(s.messages)
        if op is load:  # a new store, so that the load reads the files
            await store.aclose()
            store = FileStore(root)
            await store.open()
        plan = faults.FaultPlan(
            code,
            step,
            times=None if names_session else 1,
            path_contains=sid if names_session else None,
        )
        faults.install(plan)
        with pytest.raises(StoreError) as info:
            await op(store, s)
        assert plan.fired >= 1, f"the {step} site was not reached"
        if names_session:  # the fault stays on this session's files: others work
            assert (await store.load(other.session_id)).messages == other.messages
            other.messages.append(msg(9))
            await store.save(other, skip_index=True)
            other.messages.append(msg(10))
            await store.save(other)
        faults.uninstall()
        text = str(info.value)
        assert os.strerror(getattr(errno, code)) in text or code in text, text
        assert str(root) in text, f"the error does not name the path: {text}"
        # what a new process loads: the previous durable state, or (a fault after the
        # save's commit point: the rename) the new one, never a torn one
        stored = await _stored(root, sid)
        if op is delete:
            assert stored in (before, None)
        else:
            assert stored in (before, s.messages)
        assert await _stored(root, other.session_id) == other.messages
        # the next save after the fault clears is complete
        if op is delete:
            if stored is not None:
                await store.delete(sid)
            assert await _stored(root, sid) is None
        else:
            again = await store.load(sid) if op is load else s
            await full_save(store, again)
            assert await _stored(root, sid) == again.messages
    finally:
        await store.aclose()


# -- the runtime: a fault ends the turn with error, other sessions keep working -----


@pytest.mark.parametrize("code", ERRNOS)
async def test_final_save_fault_ends_the_turn_with_error(tmp_path: Path, code: str) -> None:
    release = anyio.Event()
    agent = scripted_agent([WaitFor(release), Reply("answer")])
    async with Runtime(FileStore(tmp_path / "store"), agent, checkpoint_interval=0.05) as rt:
        a = rt.new_session(title="a").session_id
        b = rt.new_session(title="b").session_id
        stream_a = await rt.start_turn(a, "first")
        with faults.inject(code, "rename", times=None, path_contains=a) as plan:
            release.set()
            stream_b = await rt.start_turn(b, "other")  # another session keeps working
            with anyio.fail_after(20):  # never hangs
                events_a = [e async for e in rt.events(stream_a)]
                events_b = [e async for e in rt.events(stream_b)]
            assert plan.fired >= 1
        assert [e.type for e in events_a][-2:] == ["error", "stream.end"]
        assert events_a[-2].data["type"] == "save_failed"
        assert (
            code in events_a[-2].data["message"]
            or os.strerror(getattr(errno, code)) in (events_a[-2].data["message"])
        )
        assert [e.type for e in events_b][-2:] == ["done", "stream.end"]
        # the fault cleared: the next turn saves completely
        stream = await rt.start_turn(a, "second")
        with anyio.fail_after(20):
            assert [e.type async for e in rt.events(stream)][-2:] == ["done", "stream.end"]
    async with FileStore(tmp_path / "store") as store:
        contents = [m["content"] for m in (await store.load(a)).messages]
        assert contents[-2:] == ["second", "answer"]
        assert "first" in contents
        assert [m["content"] for m in (await store.load(b)).messages] == ["other", "answer"]


@pytest.mark.parametrize("code", ERRNOS)
async def test_checkpoint_fault_never_hangs_the_turn(tmp_path: Path, code: str) -> None:
    """Checkpoints of one session fail (every journal append); its turn still ends and
    its final save, which rewrites the snapshot, keeps everything."""
    slow = Run(lambda turn: anyio.sleep(0.15))
    steps: list[Any] = []
    for i in range(3):
        steps += [f"part {i} ", slow]
    agent = scripted_agent([*steps, Reply("end")])
    root = tmp_path / "store"
    async with Runtime(FileStore(root), agent, checkpoint_interval=0.05) as rt:
        a = rt.new_session(title="a").session_id
        with faults.inject(code, "journal_append", times=None, path_contains=a):
            stream = await rt.start_turn(a, "go")
            with anyio.fail_after(20):
                types = [e.type async for e in rt.events(stream)]
    assert types[-1] == "stream.end"
    assert types[-2] in ("done", "error")
    if types[-2] == "done":
        async with FileStore(root) as store:
            assert (await store.load(a)).messages[-1]["content"] == "part 0 part 1 part 2 end"


async def test_read_fault_is_http_503_naming_the_path(tmp_path: Path) -> None:
    import httpx

    from runtime.asgi import create_app

    root = tmp_path / "store"
    async with FileStore(root) as store:
        s = await _prepared(store)
    rt = Runtime(FileStore(root), scripted_agent([Reply("x")]))
    app = create_app(rt)
    async with rt:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            with faults.inject("EIO", "read", times=None, path_contains=s.session_id):
                r = await client.get(f"/api/sessions/{s.session_id}")
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "store_error"
            assert str(root) in r.json()["detail"]
            r = await client.get(f"/api/sessions/{s.session_id}")
            assert r.status_code == 200
            assert len(r.json()["messages"]) >= 4


# -- real causes ----------------------------------------------------------------------


async def test_real_enotdir_sessions_is_a_file(tmp_path: Path) -> None:
    root = tmp_path / "store"
    async with FileStore(root) as store:
        s = await _prepared(store)
        sessions = root / "sessions"
        sessions.rename(root / "moved")
        sessions.write_text("not a directory")
        with pytest.raises(StoreError) as info:
            await store.load("neverseen")
        assert "Not a directory" in str(info.value) and str(sessions) in str(info.value)
        s.messages.append(msg(7))
        with pytest.raises(StoreError):
            await store.save(s)
        sessions.unlink()
        (root / "moved").rename(sessions)
        await store.save(s)  # the next save after the fault clears is complete
    async with FileStore(root) as store:
        assert (await store.load(s.session_id)).messages == s.messages


async def test_real_enotdir_at_open(tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / "sessions").write_text("x")
    with pytest.raises(StoreError, match="sessions"):
        await FileStore(root).open()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file modes: EACCES is injected above")
async def test_real_eacces_read_only_directory(tmp_path: Path) -> None:
    root = tmp_path / "store"
    async with FileStore(root) as store:
        s = await _prepared(store)
        before = list(s.messages)
        (root / "sessions").chmod(0o500)
        try:
            with pytest.raises(StoreError, match="Permission denied"):
                await full_save(store, s)
        finally:
            (root / "sessions").chmod(0o700)
        assert await _stored(root, s.session_id) == before
        await store.save(s)
    async with FileStore(root) as store:
        assert (await store.load(s.session_id)).messages == s.messages


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a real ENOSPC. Skipped where mounting is not permitted."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a small tmpfs here ({exc}): ENOSPC is injected above")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False, timeout=10)


async def test_real_enospc_on_a_full_filesystem(small_fs: Path) -> None:
    root = small_fs / "store"
    filler = small_fs / "filler"
    async with FileStore(root) as store:
        s = await _prepared(store)
        filler.write_bytes(b"x" * 100_000)
        durable = list(s.messages)
        with pytest.raises(StoreError, match="No space left on device"):  # noqa: PT012
            for i in range(100):
                s.messages.append({"role": "user", "content": f"{i}" + "y" * 20_000})
                await store.save(s)
                durable = list(s.messages)
        assert await _stored(root, s.session_id) == durable
        filler.unlink()  # the fault clears
        await store.save(s)
    async with FileStore(root) as store:
        assert (await store.load(s.session_id)).messages == s.messages
