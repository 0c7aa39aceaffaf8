"""FileStore with damaged files, failing disks and secrets: one bad file is quarantined
and affects nothing else; an ``OSError`` comes out as a ``StoreError`` naming the path;
credentials never reach disk and nothing is readable by other users."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest

from runtime import CorruptSession, FileStore, MemoryStore, Runtime, Session, StoreError
from runtime.testing import Reply, scripted_agent

GOOD = "healthy"


def sdir(root: Path) -> Path:
    return root / "sessions"


def quarantined(root: Path) -> list[str]:
    folder = sdir(root) / "_quarantine"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def make_healthy(root: Path, n: int = 3) -> None:
    async with FileStore(root) as store:
        s = store.new_session(session_id=GOOD, title="good")
        s.messages.extend({"role": "user", "content": str(i)} for i in range(n))
        await store.save(s)


def session_body(sid: str, n: int = 2, **fields: Any) -> bytes:
    body = Session(sid, title="t", messages=[{"role": "user", "content": "x"}] * n).to_dict()
    body.update(fields)
    return orjson.dumps(body)


async def start_runtime_and_check(root: Path) -> dict[str, Any]:
    """Start a Runtime on the damaged root (recovery runs) and check the healthy session
    loads, lists and takes a new turn; returns the recovery report."""
    agent = scripted_agent([Reply("fine")])
    async with Runtime(FileStore(root), agent) as rt:
        report = dict(rt.recovery)
        assert (await rt.get_session(GOOD)).message_count == 3
        page = await rt.list_sessions()
        assert GOOD in [s.session_id for s in page.sessions]
        await rt.wait_stream(await rt.start_turn(GOOD, "still works?"))
        assert (await rt.get_session(GOOD)).messages[-1]["content"] == "fine"
    return report


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("notes.json", b'{"a": 1}'),
        ("notes.json", b"[1,2,3]"),
        ("truncated.json", session_body("truncated")[:40]),
        ("garbage.json", os.urandom(64).replace(b"{", b"(")),
        ("empty.json", b""),
        ("strtime.json", session_body("strtime", updated_at="yesterday")),
        ("badmsgs.json", session_body("badmsgs", messages=[1, 2])),
        ("other.json", session_body("someone_else")),
    ],
    ids=[
        "object",
        "list",
        "truncated",
        "binary",
        "empty",
        "string-updated_at",
        "non-object-messages",
        "inner-id-mismatch",
    ],
)
async def test_an_unreadable_snapshot_is_quarantined_and_the_store_starts(
    tmp_path: Path, name: str, data: bytes
) -> None:
    await make_healthy(tmp_path)
    (sdir(tmp_path) / name).write_bytes(data)
    report = await start_runtime_and_check(tmp_path)
    assert report["quarantined"] == 1
    assert report["scanned"] == 1
    assert [q.split(".json.")[0] + ".json" for q in quarantined(tmp_path)] == [name]
    assert not (sdir(tmp_path) / name).exists()


async def test_a_snapshot_that_is_a_directory_is_skipped(tmp_path: Path) -> None:
    await make_healthy(tmp_path)
    (sdir(tmp_path) / "folder.json").mkdir()
    report = await start_runtime_and_check(tmp_path)
    assert report["scanned"] == 1


async def test_an_index_row_with_a_string_updated_at_makes_the_index_rebuilt(
    tmp_path: Path,
) -> None:
    await make_healthy(tmp_path)
    with (sdir(tmp_path) / "_index.jsonl").open("ab") as f:
        f.write(orjson.dumps({"session_id": "ghost", "title": "x", "updated_at": "soon"}) + b"\n")
    report = await start_runtime_and_check(tmp_path)
    assert report["quarantined"] == 0


@pytest.mark.parametrize(
    "bak",
    [
        b"\x00garbage",
        b"[1,2,3]",
        session_body(GOOD, 5, gen="abc"),
        session_body(GOOD, 5, updated_at="yesterday"),
        session_body("someone_else", 5),
    ],
    ids=["garbage", "list", "string-gen", "string-updated_at", "other-session"],
)
async def test_a_damaged_backup_never_blocks_its_live_session(tmp_path: Path, bak: bytes) -> None:
    """A live session with fewer messages than a damaged ``.bak`` stays loadable and
    saveable; the backup is quarantined, at recovery or at the first load."""
    await make_healthy(tmp_path)
    (sdir(tmp_path) / f"{GOOD}.json.bak").write_bytes(bak)
    async with FileStore(tmp_path) as store:  # no recovery: the load meets it first
        session = await store.load(GOOD)
        session.title = "saved again"
        await store.save(session)
        assert (await store.load(GOOD)).title == "saved again"
    assert len(quarantined(tmp_path)) == 1
    (sdir(tmp_path) / f"{GOOD}.json.bak").write_bytes(bak)
    report = await start_runtime_and_check(tmp_path)  # recovery meets it
    assert report["quarantined"] == 1 and report["restored"] == 0


async def test_an_orphan_backup_with_a_string_updated_at_is_quarantined(tmp_path: Path) -> None:
    await make_healthy(tmp_path)
    (sdir(tmp_path) / "orphan.json.bak").write_bytes(session_body("orphan", updated_at="x"))
    report = await start_runtime_and_check(tmp_path)
    assert report == {"scanned": 1, "restored": 0, "orphaned_backups": 0, "quarantined": 1}


async def test_an_orphan_backup_restored_counts_as_restored(tmp_path: Path) -> None:
    await make_healthy(tmp_path)
    (sdir(tmp_path) / "orphan.json.bak").write_bytes(session_body("orphan"))
    report = await start_runtime_and_check(tmp_path)
    assert report == {"scanned": 2, "restored": 1, "orphaned_backups": 1, "quarantined": 0}


async def test_a_damaged_live_snapshot_with_a_backup_is_restored_from_it(tmp_path: Path) -> None:
    await make_healthy(tmp_path)
    (sdir(tmp_path) / "lost.json").write_bytes(b"{torn")
    (sdir(tmp_path) / "lost.json.bak").write_bytes(session_body("lost", 4))
    async with FileStore(tmp_path) as store:
        report = await store.recover()
        assert (await store.load("lost")).message_count == 4
    assert report == {"scanned": 2, "restored": 1, "orphaned_backups": 1, "quarantined": 1}


def journal_record(base: int, content: str, **over: Any) -> bytes:
    rec = {"gen": 1, "base": base, "messages": [{"role": "user", "content": content}]}
    rec["updated_at"] = 1.0
    rec.update(over)
    return orjson.dumps(rec) + b"\n"


@pytest.mark.parametrize(
    "bad",
    [
        b"not json at all\n",
        journal_record("3", "x"),  # type: ignore[arg-type]
        journal_record(3, "x", messages="nope"),
        journal_record(3, "x", updated_at="late"),
        journal_record(99, "x"),
    ],
    ids=["garbage", "string-base", "string-messages", "string-updated_at", "base-past-end"],
)
async def test_a_damaged_journal_line_in_the_middle_is_logged_and_kept_aside(
    tmp_path: Path, bad: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """The lines before it apply; it and the lines after it are not applied (their
    order cannot be trusted), a log line says so, and a copy of the journal is kept
    in quarantine before the next save compacts it away."""
    await make_healthy(tmp_path)
    journal = sdir(tmp_path) / f"{GOOD}.journal"
    journal.write_bytes(journal_record(3, "3") + bad + journal_record(5, "5"))
    caplog.set_level(logging.ERROR, "runtime.stores.files")
    async with FileStore(tmp_path) as store:
        session = await store.load(GOOD)
        assert [m["content"] for m in session.messages] == ["0", "1", "2", "3"]
        await store.save(session)  # compacts: the damaged lines leave the live journal
    assert any("line 2 is damaged" in r.getMessage() for r in caplog.records)
    assert [q.split(".")[1] for q in quarantined(tmp_path)] == ["journal"]
    kept = (sdir(tmp_path) / "_quarantine" / quarantined(tmp_path)[0]).read_bytes()
    assert bad in kept
    async with FileStore(tmp_path) as store:
        assert (await store.load(GOOD)).message_count == 4


# -- disk errors ------------------------------------------------------------------------


async def test_a_store_directory_replaced_by_a_file_gives_store_errors_naming_the_path(
    tmp_path: Path,
) -> None:
    """ENOTDIR, produced for real: a load of a missing id and the first save of a new
    session raise ``StoreError`` (the path and the cause), never a raw ``OSError``."""
    store = FileStore(tmp_path)
    async with store:
        sdir(tmp_path).rename(tmp_path / "moved")
        sdir(tmp_path).write_bytes(b"not a directory")
        with pytest.raises(StoreError, match=r"sessions/missing\.json: Not a directory"):
            await store.load("missing")
        session = store.new_session(title="new")
        session.messages.append({"role": "user", "content": "hi"})
        with pytest.raises(StoreError, match=r"Not a directory \(ENOTDIR\)") as caught:
            await store.save(session)
        assert not isinstance(caught.value, OSError)
        sdir(tmp_path).unlink()
        (tmp_path / "moved").rename(sdir(tmp_path))
        await store.save(session)  # the fault cleared: the next save is complete
    async with FileStore(tmp_path) as again:
        assert (await again.load(session.session_id)).message_count == 1


async def test_a_corrupt_session_is_a_store_error(tmp_path: Path) -> None:
    await make_healthy(tmp_path)
    (sdir(tmp_path) / "bad.json").write_bytes(b"{")
    async with FileStore(tmp_path) as store:
        with pytest.raises(CorruptSession, match=r"bad\.json: not valid JSON"):
            await store.load("bad")
        assert (await store.load(GOOD)).message_count == 3


# -- secrets and permissions ------------------------------------------------------------


SECRETS = {
    "api_key": "sk-live-123",
    "nested": {"Authorization": "Bearer abc.def", "headers": [{"X-Api-Key": "k-456"}]},
    "model": "gpt-x",
}


async def test_credentials_never_reach_disk_and_files_are_private(tmp_path: Path) -> None:
    root = tmp_path / "store"
    async with FileStore(root) as store:
        s = store.new_session(title="secret", metadata=orjson.loads(orjson.dumps(SECRETS)))
        s.messages.append({"role": "user", "content": "hi"})
        await store.save(s)
        await store.save(s, skip_index=True)
        loaded = await store.load(s.session_id)
    assert loaded.metadata == {
        "api_key": "[redacted]",
        "nested": {"Authorization": "[redacted]", "headers": [{"X-Api-Key": "[redacted]"}]},
        "model": "gpt-x",
    }
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} is readable by others: {oct(mode)}"
        if path.is_file():
            data = path.read_bytes()
            for secret in (b"sk-live-123", b"Bearer abc", b"k-456"):
                assert secret not in data, f"{secret!r} written to {path}"


async def test_redaction_is_configurable_and_holds_for_every_store() -> None:
    async with MemoryStore(redact_keys=["session_cookie"]) as store:
        s = store.new_session(metadata={"session_cookie": "c", "api_key": "kept"})
        await store.save(s)
        assert (await store.load(s.session_id)).metadata == {
            "session_cookie": "[redacted]",
            "api_key": "kept",
        }
