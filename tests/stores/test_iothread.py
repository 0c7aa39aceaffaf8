"""FileStore's I/O plumbing: the store's own worker thread (``_iothread.IOThread``), the
journal descriptors kept between appends (``_fileio.AppendFds``) and the one-parse
reading of JSON-lines files (``_fileio.json_lines_checked``).

Real threads, real files under ``tmp_path``. trio is not installed here, so the
non-asyncio fallback is reached by faking the backend detection (said where done).
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import weakref
from pathlib import Path

import anyio
import anyio.lowlevel
import orjson
import pytest

from runtime.stores import _fileio, _iothread
from runtime.stores._fileio import AppendFds, json_lines_checked
from runtime.stores._iothread import IOThread


@pytest.fixture
def io() -> IOThread:
    return IOThread("test I/O")


def current_thread_name() -> str:
    return threading.current_thread().name


async def wait_until_stopped(io: IOThread) -> None:
    with anyio.fail_after(10):
        while io.running:
            await anyio.sleep(0.01)


# -- IOThread ----------------------------------------------------------------------------


async def test_runs_calls_in_one_long_lived_worker_thread(io: IOThread) -> None:
    names = {await io.run(current_thread_name) for _ in range(5)}
    assert names == {"test I/O"}
    assert await io.run(divmod, 7, 2) == (3, 1)
    io.close()


async def test_the_call_s_exception_reaches_the_caller(io: IOThread) -> None:
    def fail() -> None:
        raise FileNotFoundError("no such file: x")

    with pytest.raises(FileNotFoundError, match="no such file: x"):
        await io.run(fail)
    assert await io.run(current_thread_name) == "test I/O"  # the thread survived it
    io.close()


class Payload:
    """A weak-referenceable stand-in for a loaded session."""


async def test_results_and_arguments_live_only_as_long_as_the_caller_keeps_them(
    io: IOThread,
) -> None:
    """The idle worker must not keep the last call's result or arguments (a whole
    loaded session, a session's messages) alive: they are freed when the caller drops
    them, not at the next call."""
    for _ in range(20):  # the worker and the loop race for the hand-off; try it often
        result = await io.run(Payload)
        ref = weakref.ref(result)
        del result
        assert ref() is None, "the worker thread kept the result"

        arg = Payload()
        arg_ref = weakref.ref(arg)
        await io.run(id, arg)
        del arg
        assert arg_ref() is None, "the worker thread kept the argument"
    io.close()


async def test_a_call_made_while_the_thread_is_busy_runs_in_parallel(io: IOThread) -> None:
    """A long job (a compaction) must not delay another session's checkpoint: while the
    worker is busy, a second call goes to anyio's pool and finishes first."""
    release = threading.Event()
    order: list[str] = []

    def long_job() -> str:
        release.wait(10)
        order.append("long")
        return current_thread_name()

    async with anyio.create_task_group() as tg:
        results: dict[str, str] = {}

        async def run_long() -> None:
            results["long"] = await io.run(long_job)

        tg.start_soon(run_long)
        while not io._in_flight:  # until run_long has queued its job
            await anyio.lowlevel.checkpoint()
        results["short"] = await io.run(current_thread_name)
        order.append("short")
        release.set()
    assert order == ["short", "long"]
    assert results["long"] == "test I/O" and results["short"] != "test I/O"
    io.close()


async def test_close_ends_the_thread_and_later_calls_still_run(io: IOThread) -> None:
    await io.run(current_thread_name)
    thread = io._thread
    assert thread is not None
    io.close()
    thread.join(10)
    assert not thread.is_alive() and not io.running
    assert await io.run(current_thread_name) != "test I/O"  # anyio's pool from now on


async def test_an_idle_thread_ends_by_itself_and_restarts_on_demand(
    io: IOThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unclosed store must not keep a thread forever (the worker ends after
    ``IDLE_EXIT`` seconds without work; shortened here)."""
    monkeypatch.setattr(_iothread, "IDLE_EXIT", 0.05)
    await io.run(current_thread_name)
    await wait_until_stopped(io)
    assert await io.run(current_thread_name) == "test I/O"
    io.close()


async def test_other_backends_use_anyio_s_pool(
    io: IOThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trio is not installed here: the backend detection is faked to say "trio", which
    must route the call through ``anyio.to_thread`` (the worker thread would hand the
    result to an asyncio loop that trio does not run)."""
    monkeypatch.setattr(_iothread, "asyncio_loop", lambda: None)
    assert await io.run(current_thread_name) != "test I/O"
    assert not io.running


@pytest.mark.parametrize("how", ["cancel-scope", "task.cancel"])
async def test_a_cancelled_caller_waits_for_its_call_to_finish(io: IOThread, how: str) -> None:
    started, release = threading.Event(), threading.Event()
    finished: list[bool] = []

    def job() -> None:
        started.set()
        release.wait(10)
        finished.append(True)

    if how == "cancel-scope":
        scope = anyio.CancelScope()
        left: list[bool] = []

        async def caller() -> None:
            with scope:
                await io.run(job)
            left.append(True)

        async with anyio.create_task_group() as tg:
            tg.start_soon(caller)
            await anyio.to_thread.run_sync(started.wait, 10)
            scope.cancel()
            await anyio.sleep(0.05)
            assert not left, "the caller left before its call finished"
            release.set()
        assert scope.cancelled_caught
    else:
        task = asyncio.ensure_future(io.run(job))
        await anyio.to_thread.run_sync(started.wait, 10)
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert finished == [True], "the caller left before its call finished"
    assert await io.run(current_thread_name) == "test I/O"  # the thread is free again
    io.close()


# -- AppendFds ---------------------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def proc_fds() -> None:
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to count open descriptors")


@pytest.mark.usefixtures("proc_fds")
def test_append_fds_keeps_one_descriptor_per_key_and_appends_durably(tmp_path: Path) -> None:
    fds = AppendFds(size=2)
    before = open_fds()
    for i in range(3):
        for key in "ab":
            fds.append_durable(key, tmp_path / key, f"{key}{i}\n".encode())
    assert open_fds() == before + 2 and len(fds) == 2
    assert (tmp_path / "a").read_bytes() == b"a0\na1\na2\n"
    assert (tmp_path / "b").read_bytes() == b"b0\nb1\nb2\n"

    fds.append_durable("c", tmp_path / "c", b"c0\n")  # over size: "a", least recent, closed
    assert open_fds() == before + 2 and len(fds) == 2
    fds.append_durable("a", tmp_path / "a", b"a3\n")  # reopened: still appends at the end
    assert (tmp_path / "a").read_bytes() == b"a0\na1\na2\na3\n"

    fds.discard("a")
    assert len(fds) == 1
    fds.close()
    assert open_fds() == before and len(fds) == 0
    fds.append_durable("d", tmp_path / "d", b"d0\n")  # closed: works, keeps nothing
    assert open_fds() == before and (tmp_path / "d").read_bytes() == b"d0\n"


@pytest.mark.usefixtures("proc_fds")
def test_append_fds_closes_the_descriptor_of_a_failed_append(tmp_path: Path) -> None:
    """A write that fails (``/dev/full`` answers every write with ENOSPC) closes its
    descriptor and keeps none for the key."""
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    fds = AppendFds()
    before = open_fds()
    with pytest.raises(OSError, match="No space left"):
        fds.append_durable("full", "/dev/full", b"x\n")
    assert open_fds() == before and len(fds) == 0
    fds.append_durable("ok", tmp_path / "ok", b"ok\n")
    assert open_fds() == before + 1
    fds.clear()
    assert open_fds() == before


# -- json_lines_checked ------------------------------------------------------------------


def per_line(data: bytes) -> tuple[list[object], bool]:
    """The reference reading: each complete line on its own, stop at the first bad one."""
    lines = data.split(b"\n")
    out: list[object] = []
    for line in lines[:-1]:
        if not line:
            continue
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            return out, False
    return out, lines[-1] == b""


CASES = {
    "empty": b"",
    "one newline": b"\n",
    "blank lines": b'{"a":1}\n\n{"a":2}\n',
    "whole": b'{"a":1}\n{"a":"x,y\\n"}\n',
    "torn tail": b'{"a":1}\n{"a":',
    "bad middle": b'{"a":1}\nnot json\n{"a":2}\n',
    "two values on a line": b"1,2\n3\n",
    "a value across lines": b'"a\n"\n',
    "spaces": b"  \n",
}


@pytest.mark.parametrize("data", list(CASES.values()), ids=list(CASES))
def test_json_lines_one_parse_reads_what_line_by_line_reads(data: bytes) -> None:
    assert json_lines_checked(data)[:2] == per_line(data)


def test_json_lines_one_parse_matches_line_by_line_on_damaged_files() -> None:
    """Random truncations, insertions and deletions of a journal-like file: the one-parse
    fast path must keep exactly what the line-by-line reading keeps."""
    rng = random.Random(5)
    whole = b"".join(
        orjson.dumps({"gen": 1, "base": i, "messages": [{"content": 'a,"b"\n'}]}) + b"\n"
        for i in range(6)
    )
    for _ in range(3000):
        data = bytearray(whole)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(data) + 1)
            op = rng.random()
            if op < 0.3:
                del data[pos:]
            elif op < 0.6:
                data[pos:pos] = rng.choice([b"\n", b",", b"{", b"}", b"]", b'"', b"1,2", b"\n\n"])
            elif pos < len(data):
                del data[pos]
        assert json_lines_checked(bytes(data))[:2] == per_line(bytes(data)), bytes(data)


def test_json_lines_say_where_a_damaged_middle_line_is_and_what_it_dropped() -> None:
    lines = json_lines_checked(b'{"a":1}\nnot json\n{"a":2}\n\n{"a":3}\n')
    assert lines == ([{"a": 1}], False, 2, 3)
    assert json_lines_checked(b'{"a":1}\n{"a":').damaged_line is None  # a torn tail only


def test_read_bytes_reads_whole_files_and_none_when_missing(tmp_path: Path) -> None:
    assert _fileio.read_bytes(tmp_path / "missing") is None
    for size in (0, 1, 4096, 3 << 20):
        path = tmp_path / f"f{size}"
        data = os.urandom(size)
        path.write_bytes(data)
        assert _fileio.read_bytes(path) == data
        assert _fileio.read_bytes(str(path)) == data
