"""FileStore's tool ledger on a real disk: the file layout and modes, the cost of a
round (fdatasyncs counted through ``runtime.stores.faults``), torn tails, damaged
lines, pruning of old streams, recovery, read-only stores, failing disks, and SIGKILL
of a real process in the middle of a ledger write."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from runtime import FileStore, StoreError
from runtime.stores import faults

SID = "ledgered"


def ledger_file(root: Path, sid: str = SID) -> Path:
    return root / "sessions" / f"{sid}.ledger.jsonl"


def quarantined(root: Path) -> list[str]:
    folder = root / "sessions" / "_quarantine"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def saved_store(root: Path) -> FileStore:
    store = FileStore(root)
    await store.open()
    await store.save(store.new_session(session_id=SID, title="t"))
    return store


async def test_no_file_before_the_first_record_then_one_0600_line_per_change(
    tmp_path: Path,
) -> None:
    store = await saved_store(tmp_path)
    try:
        assert not ledger_file(tmp_path).exists()
        assert await store.tool_calls(SID, "s1") == []
        assert not ledger_file(tmp_path).exists(), "reading must not create the file"
        await store.record_tool_call(SID, "s1", "c1", "grep", {"q": "x"})
        path = ledger_file(tmp_path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        await store.record_tool_result(SID, "s1", "c1", result={"hits": 1})
        data = path.read_bytes()
        lines = [orjson.loads(line) for line in data.splitlines()]
        assert [(d["call_id"], d["state"]) for d in lines] == [
            ("c1", "started"),
            ("c1", "completed"),
        ]
        await store.record_tool_call(SID, "s1", "c1", "grep", {"q": "again"})
        await store.record_tool_result(SID, "s1", "c1", result="second")
        assert path.read_bytes() == data, "a duplicate intent or result must write nothing"
    finally:
        await store.aclose()


async def test_a_round_costs_two_fdatasyncs_and_no_fsync(tmp_path: Path) -> None:
    """The figure the ledger's design promises: an intent and a result are one
    fdatasync'd append each. Calls are counted by a fault plan that never fires."""
    store = await saved_store(tmp_path)
    try:
        await store.record_tool_call(SID, "s1", "warm", "grep", {})  # creates the file
        for step, expected in (("fdatasync", 2), ("fsync", 0), ("dir_fsync", 0)):
            with faults.inject("EIO", step, nth=10**9) as plan:
                await store.record_tool_call(SID, "s1", f"c-{step}", "grep", {"i": 1})
                await store.record_tool_result(SID, "s1", f"c-{step}", result=[1, 2])
            assert plan.seen == expected, f"{step} calls in one round"
        with faults.inject("EIO", "dir_fsync", nth=10**9) as plan:
            await store.save(store.new_session(session_id="fresh"))
            before = plan.seen
            await store.record_tool_call("fresh", "s1", "c1", "grep", {})
        assert plan.seen - before == 1, "the first record makes the file's name durable"
    finally:
        await store.aclose()


async def test_a_torn_tail_is_ignored_and_the_next_write_rewrites_the_file(
    tmp_path: Path,
) -> None:
    store = await saved_store(tmp_path)
    await store.record_tool_call(SID, "s1", "c1", "grep", {})
    await store.record_tool_result(SID, "s1", "c1", result=1)
    expected = await store.tool_calls(SID, "s1")
    await store.aclose()
    with ledger_file(tmp_path).open("ab") as f:  # a crash in the middle of an append
        f.write(b'{"session_id": "ledgered", "stream_id": "s1", "call_id": "c2", "na')
    async with FileStore(tmp_path) as store:
        assert await store.tool_calls(SID, "s1") == expected
        await store.record_tool_call(SID, "s1", "c2", "fetch", "{}")
    assert ledger_file(tmp_path).read_bytes().endswith(b"\n")
    async with FileStore(tmp_path) as store:
        calls = await store.tool_calls(SID, "s1")
    assert [(r.call_id, r.state) for r in calls] == [("c1", "completed"), ("c2", "started")]
    assert quarantined(tmp_path) == [], "a torn tail is not damage"


async def test_a_damaged_middle_line_is_skipped_quarantined_and_the_rest_applies(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await saved_store(tmp_path)
    for call in ("c1", "c2", "c3"):
        await store.record_tool_call(SID, "s1", call, "grep", {"call": call})
    await store.record_tool_result(SID, "s1", "c2", result="two")
    await store.aclose()
    path = ledger_file(tmp_path)
    lines = path.read_bytes().splitlines()
    lines[1] = b'{"session_id": "ledgered", "garbage'  # the intent of c2
    lines.insert(2, b'{"session_id": "ledgered", "stream_id": "s1", "call_id": 7}')
    path.write_bytes(b"\n".join(lines) + b"\n")
    caplog.set_level(logging.ERROR, logger="runtime.stores.files")
    async with FileStore(tmp_path) as store:
        calls = await store.tool_calls(SID, "s1")
        # c2's result line is a whole record: the call is known, with its result
        assert [(r.call_id, r.state) for r in calls] == [
            ("c1", "started"),
            ("c3", "started"),
            ("c2", "completed"),
        ]
        assert "line 2 is not valid JSON" in caplog.text
        assert "'call_id' is 7" in caplog.text
        assert [n.startswith(f"{SID}.ledger.jsonl.") for n in quarantined(tmp_path)] == [True]
        await store.record_tool_result(SID, "s1", "c1", result="one")
    clean = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert len(clean) == 3, "the next write rewrote the file without the damaged lines"
    async with FileStore(tmp_path) as store:
        assert (await store.recover())["quarantined"] == 0
        states = {r.call_id: r.state for r in await store.tool_calls(SID, "s1")}
    assert states == {"c1": "completed", "c2": "completed", "c3": "started"}


async def test_the_file_keeps_the_latest_streams(tmp_path: Path) -> None:
    store = FileStore(tmp_path, ledger_streams=3)
    await store.open()
    await store.save(store.new_session(session_id=SID))
    try:
        streams = [f"s{i}" for i in range(1, 2 * 3 + 2)]  # the 7th stream prunes
        for stream in streams:
            await store.record_tool_call(SID, stream, "c1", "grep", {"stream": stream})
            await store.record_tool_result(SID, stream, "c1", result=stream)
        kept = streams[-3:]
        for stream in streams:
            calls = await store.tool_calls(SID, stream)
            assert [r.result for r in calls] == ([stream] if stream in kept else []), stream
        lines = ledger_file(tmp_path).read_bytes().splitlines()
        assert len(lines) == 3 + 1, "rewritten (one line per kept record), then one result"
    finally:
        await store.aclose()
    async with FileStore(tmp_path, ledger_streams=3) as store:
        assert [len(await store.tool_calls(SID, s)) for s in streams] == [
            1 if s in kept else 0 for s in streams
        ]


async def test_recovery_leaves_ledgers_alone_and_moves_an_orphan_aside(tmp_path: Path) -> None:
    store = await saved_store(tmp_path)
    await store.record_tool_call(SID, "s1", "c1", "grep", {})
    await store.save(store.new_session(session_id="doomed"))
    await store.record_tool_call("doomed", "s1", "c1", "grep", {})
    leftover = ledger_file(tmp_path, "doomed").read_bytes()
    await store.delete("doomed")
    assert not ledger_file(tmp_path, "doomed").exists()
    await store.aclose()
    # a delete that a crash interrupted (tombstone written, ledger not yet unlinked),
    # and a ledger without any session at all
    ledger_file(tmp_path, "doomed").write_bytes(leftover)
    ledger_file(tmp_path, "ghost").write_bytes(leftover.replace(b"doomed", b"ghost"))
    async with FileStore(tmp_path) as store:
        report = await store.recover()
        assert report == {"scanned": 1, "restored": 0, "orphaned_backups": 0, "quarantined": 0}
        assert not ledger_file(tmp_path, "doomed").exists()
        assert not ledger_file(tmp_path, "ghost").exists()
        assert [n.startswith("ghost.ledger.jsonl.") for n in quarantined(tmp_path)] == [True]
        assert not await store.exists("ghost")
        await store.save(store.new_session(session_id="ghost"))
        assert await store.tool_calls("ghost", "s1") == [], "a new session inherits nothing"
        assert len(await store.tool_calls(SID, "s1")) == 1
        assert await store.recover() == {
            "scanned": 2,
            "restored": 0,
            "orphaned_backups": 0,
            "quarantined": 0,
        }


async def test_a_read_only_store_reads_the_ledger_and_refuses_to_write(tmp_path: Path) -> None:
    store = await saved_store(tmp_path)
    try:
        first = await store.record_tool_call(SID, "s1", "c1", "grep", {})
        async with FileStore(tmp_path, read_only=True) as reader:
            assert await reader.tool_calls(SID, "s1") == [first]
            await store.record_tool_result(SID, "s1", "c1", result="done")
            assert [r.state for r in await reader.tool_calls(SID, "s1")] == ["completed"]
            before = ledger_file(tmp_path).read_bytes()
            with pytest.raises(StoreError, match="read-only"):
                await reader.record_tool_call(SID, "s1", "c2", "grep", {})
            with pytest.raises(StoreError, match="read-only"):
                await reader.record_tool_result(SID, "s1", "c1", result="other")
            assert ledger_file(tmp_path).read_bytes() == before
    finally:
        await store.aclose()


@pytest.mark.parametrize("step", ["ledger_append", "fdatasync"])
async def test_a_failing_disk_is_a_store_error_and_the_ledger_stays_whole(
    tmp_path: Path, step: str
) -> None:
    store = await saved_store(tmp_path)
    try:
        await store.record_tool_call(SID, "s1", "c1", "grep", {})
        with (
            faults.inject("ENOSPC", step, path_contains=".ledger.jsonl"),
            pytest.raises(StoreError, match=r"ledger\.jsonl.*ENOSPC"),
        ):
            await store.record_tool_result(SID, "s1", "c1", result="lost?")
        # the failed line may or may not be on disk; the store reads it again and
        # the call is in one of its two whole states, in this process and after a restart
        state = (await store.tool_calls(SID, "s1"))[0].state
        assert state in ("started", "completed")
        done = await store.record_tool_result(SID, "s1", "c1", result="retried")
        await store.record_tool_call(SID, "s1", "c2", "grep", {})
    finally:
        await store.aclose()
    async with FileStore(tmp_path) as store:
        calls = await store.tool_calls(SID, "s1")
    assert calls[0] == done and [r.call_id for r in calls] == ["c1", "c2"]


_CHILD = textwrap.dedent(
    """
    import sys, anyio
    from runtime import FileStore

    async def main(root):
        async with FileStore(root) as store:
            if not await store.exists("ledgered"):
                await store.save(store.new_session(session_id="ledgered"))
            for i in range(30):
                await store.record_tool_call(
                    "ledgered", "s1", f"c{i}", "grep", {"i": i, "pad": "x" * 3000}
                )
                print("intent", i, flush=True)
                await store.record_tool_result("ledgered", "s1", f"c{i}", result={"n": i})
                print("result", i, flush=True)

    anyio.run(main, sys.argv[1])
    """
)


@pytest.mark.parametrize(
    "fault",
    [
        "kill-torn:ledger_append:1",
        "kill-torn:ledger_append:8",
        "kill-torn:ledger_append:23",
        "kill:ledger_append:14",
        "kill-after:ledger_append:5",
        "kill:fdatasync:11",
        "kill-after:fdatasync:20",
    ],
)
def test_sigkill_in_a_ledger_write_loses_no_acknowledged_record(tmp_path: Path, fault: str) -> None:
    """A real process writes intents and results and is SIGKILLed at a ledger write
    (half a line written, before it, or after it): after a restart every record it
    acknowledged is there, the one in flight is whole or absent, and the ledger
    keeps working."""
    env = dict(os.environ, **{faults.ENV_VAR: fault})
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    acked = [line.split() for line in proc.stdout.splitlines()]
    intents = {int(i) for kind, i in acked if kind == "intent"}
    results = {int(i) for kind, i in acked if kind == "result"}
    in_flight = len(acked) // 2  # the call the process was writing for

    async def check() -> None:
        async with FileStore(tmp_path) as store:
            calls = {int(r.call_id[1:]): r for r in await store.tool_calls(SID, "s1")}
            assert intents <= set(calls), "an acknowledged intent was lost"
            assert set(calls) <= intents | {in_flight}
            for i, record in calls.items():
                assert record.arguments == {"i": i, "pad": "x" * 3000}
                if i in results:
                    assert (record.state, record.result) == ("completed", {"n": i})
                else:
                    assert (record.state, record.result) in (
                        ("started", None),
                        ("completed", {"n": i}),
                    )
            await store.record_tool_call(SID, "s1", "after", "grep", {})
        async with FileStore(tmp_path) as store:
            # an intent appended to a torn tail without a rewrite would be glued to
            # it and lost
            calls_after = await store.tool_calls(SID, "s1")
            assert (calls_after[-1].call_id, calls_after[-1].state) == ("after", "started")
            await store.record_tool_result(SID, "s1", "after", result="fine")
        async with FileStore(tmp_path) as store:
            assert (await store.tool_calls(SID, "s1"))[-1].state == "completed"

    import anyio

    anyio.run(check)


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "4"])
def test_ledger_streams_must_be_a_positive_integer(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match=f"invalid ledger_streams {bad!r}"):
        FileStore(tmp_path, ledger_streams=bad)  # type: ignore[arg-type]
    assert not tmp_path.joinpath("sessions").exists()
