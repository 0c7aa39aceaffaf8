"""Tests of runtime/routing.py (the gateway route table) and runtime/cli/_routes.py.

Every test uses a real ``routes.json`` under ``tmp_path``: real atomic writes, fsync and
rename. Nothing is faked.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import threading
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from runtime._exceptions import StoreError
from runtime.cli import _routes
from runtime.routing import (
    README_TEXT,
    RouteConfig,
    RouteEntry,
    RouteTable,
    prune_periodically,
    session_key,
)

NOW = datetime.now(UTC)


def entry(
    key: str,
    *,
    age_days: float,
    created_days: float | None = None,
    suspended: bool = False,
    session_id: str | None = None,
) -> RouteEntry:
    """A route last updated ``age_days`` ago (created ``created_days`` ago)."""
    created = age_days if created_days is None else created_days
    return RouteEntry(
        session_key=key,
        session_id=session_id or f"sid-{abs(hash(key)) % 10**12}",
        created_at=NOW - timedelta(days=created),
        updated_at=NOW - timedelta(days=age_days),
        platform="telegram",
        chat_type="dm",
        display_name=None,
        suspended=suspended,
    )


def key(n: int | str) -> str:
    return session_key("telegram", "dm", n)


async def table_with(path: Path, *entries: RouteEntry) -> RouteTable:
    table = RouteTable(path)
    for e in entries:
        await table.put(e)
    return table


def file_keys(path: Path) -> list[str]:
    return list(orjson.loads(path.read_bytes()))


def freeze_mtime(path: Path) -> tuple[int, bytes]:
    """Set an old mtime; any later write (a new file via rename) changes it."""
    os.utime(path, ns=(1_000_000_000 * 10**9, 1_000_000_000 * 10**9))
    return path.stat().st_mtime_ns, path.read_bytes()


# -- session_key ---------------------------------------------------------------------


def test_session_key_format() -> None:
    assert session_key("telegram", "dm", 42) == "agent:main:telegram:dm:42"
    assert (
        session_key("slack", "channel", "C1", thread_id="1712.5", user_id="U9")
        == "agent:main:slack:channel:C1:1712.5:U9"
    )
    assert session_key("slack", "group", "C1", user_id="U9") == "agent:main:slack:group:C1:U9"
    assert session_key("telegram", "group", -100, thread_id=7) == "agent:main:telegram:group:-100:7"
    assert session_key("whatsapp", "dm", "491", profile="work") == "agent:work:whatsapp:dm:491"
    assert (
        session_key("telegram", "dm", 1, thread_id="", user_id=None) == "agent:main:telegram:dm:1"
    )


def test_session_key_rejects_empty_parts() -> None:
    with pytest.raises(ValueError, match=r"chat_id='' must not be empty"):
        session_key("telegram", "dm", "")
    with pytest.raises(TypeError, match=r"platform=None must be a str or an int"):
        session_key(None, "dm", 1)  # type: ignore[arg-type]


# -- RouteEntry ----------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["../etc", "a/b", "a\\b", "..", ""])
def test_entry_rejects_traversal_session_id(bad: str) -> None:
    rule = "must be non-empty and must not contain '..', '/' or '\\'"
    with pytest.raises(ValueError, match=re.escape(f"invalid route session_id {bad!r}: {rule}")):
        RouteEntry(session_key=key(1), session_id=bad, created_at=NOW, updated_at=NOW)


def test_entry_rejects_naive_times_and_reserved_keys() -> None:
    naive = datetime(2025, 1, 1)
    with pytest.raises(ValueError, match=r"updated_at=.* must be timezone-aware"):
        RouteEntry(session_key=key(1), session_id="s1", created_at=NOW, updated_at=naive)
    with pytest.raises(ValueError, match=r"route key '_README'.* must not start with '_'"):
        RouteEntry(session_key="_README", session_id="s1", created_at=NOW, updated_at=NOW)


async def test_load_rejects_bad_entries_and_skips_metadata(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "routes.json"
    good = entry(key("good"), age_days=1).to_dict()
    del good["session_key"]
    path.write_bytes(
        orjson.dumps(
            {
                "_README": "anything",
                "_meta": {"session_id": "looks-real", "created_at": "x", "updated_at": "x"},
                key("good"): good,
                key("dots"): {**good, "session_id": "../../etc/passwd"},
                key("slash"): {**good, "session_id": "a/b"},
                key("backslash"): {**good, "session_id": "a\\b"},
                key("list"): ["not", "a", "dict"],
                key("str"): "not a dict",
            }
        )
    )
    caplog.set_level(logging.WARNING, logger="runtime.routing")
    entries = await RouteTable(path).entries()
    assert [e.session_key for e in entries] == [key("good")]
    warned = " ".join(r.getMessage() for r in caplog.records)
    for name in ("dots", "slash", "backslash"):
        assert key(name) in warned
    assert "must not contain '..', '/' or '\\'" in warned


# -- file format ---------------------------------------------------------------------


async def test_sentinel_first_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    original = RouteEntry(
        session_key=key(7),
        session_id="0123abcd",
        created_at=NOW - timedelta(days=3),
        updated_at=NOW,
        platform="telegram",
        chat_type="dm",
        display_name="Alice",
        suspended=True,
    )
    await table_with(path, original)

    data = orjson.loads(path.read_bytes())
    assert next(iter(data)) == "_README"
    assert data["_README"] == README_TEXT
    assert "gateway routing index" in README_TEXT
    assert "not the session list" in README_TEXT
    assert "`runtime sessions list`" in README_TEXT
    assert path.read_text().startswith('{\n  "_README"')  # human-readable, indented

    reloaded = RouteTable(path)
    assert await reloaded.entries() == [original]  # the sentinel is not an entry
    await reloaded.put(entry(key(8), age_days=0))
    assert file_keys(path) == ["_README", key(7), key(8)]
    assert os.listdir(tmp_path) == ["routes.json"]  # no temp file left behind


async def test_corrupt_file_raises_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    path.write_bytes(b"{not json")
    table = RouteTable(path)
    with pytest.raises(StoreError, match=r"routes\.json' is not valid JSON"):
        await table.get_or_create(key(1))
    assert path.read_bytes() == b"{not json"


async def test_invalid_key_writes_nothing(tmp_path: Path) -> None:
    table = RouteTable(tmp_path / "routes.json")
    with pytest.raises(ValueError, match=r"must not start with '_'"):
        await table.get_or_create("_README")
    assert not (tmp_path / "routes.json").exists()


def test_default_table_lives_in_the_store_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_HOME", str(tmp_path / "home"))
    assert RouteTable.default().path == tmp_path / "home" / "routes.json"
    assert RouteTable.for_root(tmp_path).path == tmp_path / "routes.json"


# -- get_or_create -------------------------------------------------------------------


async def test_get_or_create_creates_then_touches(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    table = RouteTable(path)
    k = session_key("slack", "channel", "C1", thread_id="99")
    created = await table.get_or_create(k, display_name="#general")
    assert len(created.session_id) == 32
    assert int(created.session_id, 16) >= 0  # uuid4 hex
    assert (created.platform, created.chat_type) == ("slack", "channel")
    assert created.created_at == created.updated_at
    assert created.created_at.tzinfo is not None
    assert await RouteTable(path).get(k) == created  # durable

    old = entry(key(5), age_days=30, created_days=60)
    await table.put(old)
    before = datetime.now(UTC)
    touched = await table.get_or_create(key(5))
    assert touched.session_id == old.session_id
    assert touched.created_at == old.created_at
    assert touched.updated_at >= before
    assert (await RouteTable(path).get(key(5))) == touched


# -- prune_old_entries ---------------------------------------------------------------


async def test_prune_removes_old_keeps_fresh(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    table = await table_with(path, entry(key("old"), age_days=91), entry(key("fresh"), age_days=89))
    assert await table.prune_old_entries(90) == 1
    assert [e.session_key for e in await table.entries()] == [key("fresh")]
    assert file_keys(path) == ["_README", key("fresh")]


async def test_prune_uses_updated_at_not_created_at(tmp_path: Path) -> None:
    table = await table_with(
        tmp_path / "routes.json",
        entry(key("long-lived"), age_days=1, created_days=400),
    )
    assert await table.prune_old_entries(90) == 0
    assert await table.get(key("long-lived")) is not None


@pytest.mark.parametrize("days", [0, -1, -365])
async def test_prune_disabled_by_zero_or_negative(tmp_path: Path, days: int) -> None:
    path = tmp_path / "routes.json"
    table = await table_with(path, entry(key("ancient"), age_days=10_000))
    mtime, content = freeze_mtime(path)
    writes = table.statistics().writes
    assert await table.prune_old_entries(days) == 0
    assert await table.get(key("ancient")) is not None
    assert (path.stat().st_mtime_ns, path.read_bytes()) == (mtime, content)
    assert table.statistics().writes == writes


async def test_prune_keeps_suspended(tmp_path: Path) -> None:
    table = await table_with(
        tmp_path / "routes.json",
        entry(key("suspended"), age_days=500, suspended=True),
        entry(key("plain"), age_days=500),
    )
    assert await table.prune_old_entries(90) == 1
    assert [e.session_key for e in await table.entries()] == [key("suspended")]


async def test_suspend_and_remove(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    table = await table_with(path, entry(key("a"), age_days=200), entry(key("b"), age_days=1))
    suspended = await table.set_suspended(key("a"))
    assert suspended.suspended
    assert (await RouteTable(path).get(key("a"))) == suspended  # durable
    assert await table.prune_old_entries(90) == 0
    await table.set_suspended(key("a"), False)
    assert await table.prune_old_entries(90) == 1
    with pytest.raises(KeyError, match=r"no route with session key"):
        await table.set_suspended(key("a"))

    mtime, _ = freeze_mtime(path)
    assert await table.remove(key("missing")) is False
    assert path.stat().st_mtime_ns == mtime  # nothing to remove: no write
    assert await table.remove(key("b")) is True
    assert file_keys(path) == ["_README"]


async def test_prune_keeps_active_and_callback_gets_session_key(tmp_path: Path) -> None:
    busy = entry(key("busy"), age_days=200, session_id="busy-session")
    idle = entry(key("idle"), age_days=200, session_id="idle-session")
    table = await table_with(tmp_path / "routes.json", busy, idle)
    seen: list[str] = []

    def has_active_processes(arg: str) -> bool:
        seen.append(arg)
        return arg == busy.session_key

    assert await table.prune_old_entries(90, has_active_processes=has_active_processes) == 1
    assert sorted(seen) == sorted([busy.session_key, idle.session_key])
    assert [e.session_key for e in await table.entries()] == [busy.session_key]


async def test_prune_callback_matching_session_ids_protects_nothing(tmp_path: Path) -> None:
    """A callback that only knows session ids never sees one, so it protects nothing."""
    busy = entry(key("busy"), age_days=200, session_id="busy-session")
    table = await table_with(tmp_path / "routes.json", busy)

    async def knows_only_session_ids(arg: str) -> bool:  # async callbacks are awaited
        return arg in {"busy-session"}

    assert await table.prune_old_entries(90, has_active_processes=knows_only_session_ids) == 1
    assert await table.entries() == []


async def test_prune_keeps_route_refreshed_while_pruning(tmp_path: Path) -> None:
    """A message arriving between the prune's scan and its removal keeps the route
    (the callback runs outside the lock, so it may use the table)."""
    table = await table_with(
        tmp_path / "routes.json",
        entry(key("revived"), age_days=200),
        entry(key("dead"), age_days=200),
    )

    async def has_active_processes(k: str) -> bool:
        if k == key("revived"):
            await table.get_or_create(k)  # a new message for this chat
        return False

    assert await table.prune_old_entries(90, has_active_processes=has_active_processes) == 1
    assert [e.session_key for e in await table.entries()] == [key("revived")]


async def test_prune_writes_only_when_something_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "routes.json"
    table = await table_with(path, entry(key("fresh"), age_days=1))
    mtime, content = freeze_mtime(path)
    writes = table.statistics().writes
    assert await table.prune_old_entries(90) == 0
    assert (path.stat().st_mtime_ns, path.read_bytes()) == (mtime, content)
    assert table.statistics().writes == writes

    await table.put(entry(key("old-1"), age_days=100))
    await table.put(entry(key("old-2"), age_days=100))
    mtime, _ = freeze_mtime(path)
    writes = table.statistics().writes
    assert await table.prune_old_entries(90) == 2
    assert table.statistics().writes == writes + 1
    assert path.stat().st_mtime_ns != mtime
    assert file_keys(path) == ["_README", key("fresh")]


async def test_prune_concurrent_with_reader_tasks_and_threads(tmp_path: Path) -> None:
    """Pruner tasks, reader/updater tasks, reader threads (each with its own event loop)
    and a thread parsing the raw file all run at once: exactly the stale half goes, and
    no route created or updated while a prune is in progress is lost.

    Each pruner's ``has_active_processes`` callback (which runs between the prune's
    scan and its removal) waits until every reader finished one more round, so that
    updates really land in the middle of each prune."""
    path = tmp_path / "routes.json"
    stale = [key(f"stale-{i}") for i in range(150)]
    fresh = [key(f"fresh-{i}") for i in range(150)]
    rows: dict[str, Any] = {"_README": README_TEXT}
    for k, age in [(k, 120) for k in stale] + [(k, 3) for k in fresh]:
        row = entry(k, age_days=age).to_dict()
        del row["session_key"]
        rows[k] = row
    path.write_bytes(orjson.dumps(rows))
    table = RouteTable(path)
    fresh_ids = {
        e.session_key: e.session_id for e in await table.entries() if e.session_key in fresh
    }

    readers = 6
    progress = threading.Condition()
    rounds_done = [0] * readers
    pruning_done = threading.Event()
    errors: list[str] = []
    raw_reads = 0
    latest: dict[str, datetime] = {}  # updated_at each touched route must keep (or exceed)
    created: list[str] = []  # routes the readers created while pruning ran

    async def reader(worker: int) -> None:
        rounds = 0
        while rounds < 3 or not pruning_done.is_set():
            for k in fresh[worker::readers][:10]:
                got = await table.get(k)
                if got is None or got.session_id != fresh_ids[k]:
                    errors.append(f"fresh route {k} lost: {got}")
            await table.get(stale[(rounds * 7 + worker) % len(stale)])  # may be gone
            touched = await table.get_or_create(fresh[(rounds + worker) % len(fresh)])
            if touched.session_id != fresh_ids[touched.session_key]:
                errors.append(f"fresh route {touched.session_key} got a new session")
            latest[touched.session_key] = max(
                touched.updated_at, latest.get(touched.session_key, touched.updated_at)
            )
            created.append((await table.get_or_create(key(f"new-{worker}-{rounds}"))).session_key)
            rounds += 1
            with progress:
                rounds_done[worker] = rounds
                progress.notify_all()

    def raw_file_reader() -> None:
        nonlocal raw_reads
        while True:
            data = orjson.loads(path.read_bytes())  # never a torn file
            if not set(fresh) <= set(data):
                errors.append("a fresh route vanished from routes.json")
            raw_reads += 1
            if pruning_done.is_set():
                return

    def wait_for_readers(minimum: int) -> list[int]:
        with progress:
            progress.wait_for(lambda: min(rounds_done) >= minimum)
            return list(rounds_done)

    async def pruner(removed: list[int]) -> None:
        waited = False

        async def has_active_processes(k: str) -> bool:
            nonlocal waited
            if not waited:  # first candidate: let every reader do another round
                waited = True
                now = await anyio.to_thread.run_sync(wait_for_readers, 0)
                await anyio.to_thread.run_sync(wait_for_readers, max(now) + 1)
            return False

        removed.append(await table.prune_old_entries(90, has_active_processes=has_active_processes))

    removed: list[int] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, raw_file_reader)
        for worker in range(readers):
            if worker % 2:
                tg.start_soon(anyio.to_thread.run_sync, partial(anyio.run, reader, worker))
            else:
                tg.start_soon(reader, worker)
        await anyio.to_thread.run_sync(wait_for_readers, 1)
        async with anyio.create_task_group() as pruners:
            for _ in range(4):
                pruners.start_soon(pruner, removed)
        pruning_done.set()

    assert errors == []
    assert raw_reads > 0
    assert sum(removed) == len(stale)
    in_memory = {e.session_key: e for e in await table.entries()}
    on_disk = {e.session_key: e for e in await RouteTable(path).entries()}
    assert sorted(in_memory) == sorted(fresh + created)  # no update was lost
    assert on_disk == in_memory
    for k, updated_at in latest.items():
        assert in_memory[k].updated_at >= updated_at


# -- RouteConfig ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, 90),
        ({"max_age_days": None}, 90),
        ({"max_age_days": 30}, 30),
        ({"max_age_days": 0}, 0),
        ({"max_age_days": -5}, 0),
        ({"max_age_days": "45"}, 45),
        ({"max_age_days": "-3"}, 0),
        ({"max_age_days": 30.0}, 30),
        ({"max_age_days": 2.5}, 90),
        ({"max_age_days": "soon"}, 90),
        ({"max_age_days": True}, 90),
        ({"max_age_days": [7]}, 90),
        ({"max_age_days": float("nan")}, 90),
    ],
)
def test_route_config_coercions(raw: dict[str, Any], expected: int) -> None:
    config = RouteConfig.from_dict(raw)
    assert config.max_age_days == expected
    assert config.to_dict() == {"max_age_days": expected}
    assert RouteConfig.from_dict(config.to_dict()) == config


def test_route_config_constructor_is_strict() -> None:
    assert RouteConfig().max_age_days == 90
    with pytest.raises(ValueError, match=r"max_age_days=-1 must be >= 0"):
        RouteConfig(max_age_days=-1)


# -- background pruning --------------------------------------------------------------


class LogEvent(logging.Handler):
    """Sets an anyio.Event when a ``runtime.routing`` record contains ``needle``
    (records of the pruner are emitted on the event loop thread)."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle
        self.event = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.event.set()

    async def wait(self) -> None:
        logger = logging.getLogger("runtime.routing")
        logger.addHandler(self)
        try:
            with anyio.fail_after(10):
                await self.event.wait()
        finally:
            logger.removeHandler(self)


async def test_prune_periodically_first_tick_at_once_then_every_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Pruning drops routes, never session files."""
    caplog.set_level(logging.INFO, logger="runtime.routing")
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    old = entry(key("old"), age_days=100, session_id="old-session")
    (sessions / "old-session.json").write_text("{}")
    table = await table_with(tmp_path / "routes.json", old, entry(key("fresh"), age_days=1))

    async with anyio.create_task_group() as tg:
        await tg.start(partial(prune_periodically, table, interval=0.02, max_age_days=90))
        assert await table.get(key("old")) is None  # the first tick already ran
        assert "pruned 1 route(s) older than 90 days" in caplog.text

        pruned = LogEvent("pruned 1 route(s)")
        await table.put(entry(key("later"), age_days=100))
        await pruned.wait()  # a later tick
        tg.cancel_scope.cancel()

    assert [e.session_key for e in await table.entries()] == [key("fresh")]
    assert (sessions / "old-session.json").read_text() == "{}"


async def test_prune_periodically_logs_failures_and_retries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="runtime.routing")
    path = tmp_path / "routes.json"
    path.write_bytes(b"garbage")
    table = RouteTable(path)
    async with anyio.create_task_group() as tg:
        await tg.start(partial(prune_periodically, table, interval=0.02, max_age_days=90))
        assert "pruning failed" in caplog.text
        pruned = LogEvent("pruned 1 route(s)")
        fixed = tmp_path / "fixed.json"  # repaired by an operator, atomically
        fixed.write_bytes(orjson.dumps({key("old"): _row(entry(key("old"), age_days=100))}))
        fixed.replace(path)
        await pruned.wait()
        tg.cancel_scope.cancel()
    assert file_keys(path) == ["_README"]


def _row(e: RouteEntry) -> dict[str, Any]:
    row = e.to_dict()
    del row["session_key"]
    return row


async def test_prune_periodically_rejects_bad_interval(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"interval=0 must be a finite number of seconds > 0"):
        await prune_periodically(RouteTable(tmp_path / "routes.json"), interval=0)


# -- CLI -----------------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="runtime")
    _routes.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def populate(root: Path, *entries: RouteEntry) -> None:
    anyio.run(partial(table_with, root / "routes.json", *entries))


@pytest.mark.parametrize("with_rich", [True, False])
def test_cli_list_table(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    with_rich: bool,
) -> None:
    if not with_rich:
        monkeypatch.setitem(sys.modules, "rich.console", None)  # import fails: plain text
    e = entry(key(42), age_days=2, session_id="abc123")
    named = RouteEntry(
        session_key=key(43),
        session_id="def456",
        created_at=NOW,
        updated_at=NOW,
        display_name="[bold]Bob[/]",
        suspended=True,
    )
    populate(tmp_path, e, named)
    assert run_cli("routes", "list", "--store", str(tmp_path)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"2 route(s) in {tmp_path / 'routes.json'}"
    body = "\n".join(lines)
    assert "SESSION KEY" in body
    assert "[bold]Bob[/]" in body  # shown literally, not as markup
    first = next(i for i, line in enumerate(lines) if key(43) in line)
    second = next(i for i, line in enumerate(lines) if key(42) in line)
    assert first < second  # most recently updated first
    assert "def456" in lines[first]
    assert "yes" in lines[first]
    assert "abc123" in lines[second]


def test_cli_list_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    e = entry(key(1), age_days=1, session_id="s-1")
    populate(tmp_path, e)
    assert run_cli("routes", "list", "--json", "--store", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert orjson.loads(out) == [e.to_dict()]


def test_cli_list_empty_and_default_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_HOME", str(tmp_path))
    assert run_cli("routes", "list") == 0
    assert capsys.readouterr().out == f"No routes in {tmp_path / 'routes.json'}.\n"
    assert run_cli("routes", "list", "--json") == 0
    assert capsys.readouterr().out == "[]\n"


def test_cli_prune(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    populate(tmp_path, entry(key("old"), age_days=40), entry(key("new"), age_days=1))
    assert run_cli("routes", "prune", "--max-age-days", "30", "--store", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert out.startswith("Removed 1 route(s) not updated for 30 day(s)")
    assert file_keys(tmp_path / "routes.json") == ["_README", key("new")]

    assert (
        run_cli("routes", "prune", "--max-age-days", "0", "--json", "--store", str(tmp_path)) == 0
    )
    assert orjson.loads(capsys.readouterr().out) == {"removed": 0}
    assert file_keys(tmp_path / "routes.json") == ["_README", key("new")]


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert run_cli("routes", "list", "--store", str(missing)) == 1
    err = capsys.readouterr().err
    assert err == (
        f"runtime: error: store root {str(missing)!r} is not a directory "
        "(set --store or RUNTIME_HOME)\n"
    )
    (tmp_path / "routes.json").write_text("{\n broken")
    assert run_cli("routes", "prune", "--max-age-days", "5", "--store", str(tmp_path)) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("runtime: error: route table")
    assert "is not valid JSON" in captured.err
