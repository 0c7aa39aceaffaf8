"""The bad-input catalogue: one test per class of bad input, each a clear error (its
type, and a message naming the value and the rule) and nothing written.

"Nothing written" is checked on a real FileStore root: every file's bytes are the
same after the bad input as before (``_lock`` aside). Damaged files on disk may only
move, unchanged, into ``_quarantine/``; every other file stays as it was.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, redirect_stderr
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from runtime import (
    CorruptSession,
    FileStore,
    InvalidSessionId,
    Runtime,
    Session,
    StoreError,
    Turn,
)
from runtime.asgi import create_app
from runtime.cli import main as cli_main
from runtime.testing import Reply, scripted_agent

GOOD = "healthy"


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` and its bytes (the lock file aside)."""
    out: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != "_lock":
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


def assert_nothing_written(root: Path, before: dict[str, bytes], *, index: bool = True) -> None:
    """Same files, same bytes; a file gone from its place must sit in ``_quarantine``
    with the same bytes. ``index=False``: the derived ``_index.jsonl`` may change
    (recovery rebuilds it)."""
    after = tree(root)
    if not index:
        before = {k: v for k, v in before.items() if not k.endswith("_index.jsonl")}
        after = {k: v for k, v in after.items() if not k.endswith("_index.jsonl")}
    quarantine = {k: v for k, v in after.items() if "/_quarantine/" in f"/{k}"}
    rest = {k: v for k, v in after.items() if k not in quarantine}
    for name, data in before.items():
        if name in rest:
            assert rest[name] == data, f"{name} was rewritten"
        else:
            assert data in quarantine.values(), f"{name} vanished instead of being kept aside"
    assert set(rest) <= set(before), f"new files: {sorted(set(rest) - set(before))}"


@pytest.fixture
async def root(tmp_path: Path) -> Path:
    """A store root holding one healthy session with 3 messages."""
    async with FileStore(tmp_path) as store:
        s = store.new_session(session_id=GOOD, title="good")
        s.messages.extend({"role": "user", "content": str(i)} for i in range(3))
        await store.save(s)
    return tmp_path


# -- session ids (store and runtime) --------------------------------------------------

BAD_IDS = {
    "id-empty": "",
    "id-too-long": "a" * 65,
    "id-traversal": "../etc",
    "id-slash": "a/b",
    "id-nul": "a\x00b",
    "id-dot": "a.json",
    "id-space": "a b",
    "id-non-ascii": "sessão",
    "id-reserved-underscore": "_index",
    "id-not-a-string": 42,
}


@pytest.mark.parametrize("bad", list(BAD_IDS.values()), ids=list(BAD_IDS))
async def test_bad_session_id(root: Path, bad: Any) -> None:
    before = tree(root)
    async with FileStore(root) as store:
        for call in (store.load, store.load_metadata, store.delete):
            with pytest.raises(InvalidSessionId) as info:
                await call(bad)
            assert repr(bad) in str(info.value)
            assert "[A-Za-z0-9_-]{1,64}" in str(info.value) or "reserves" in str(info.value)
        with pytest.raises(InvalidSessionId):
            await store.save(Session(bad))
    assert_nothing_written(root, before)


# -- what an agent emits ----------------------------------------------------------------


def _deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"x": value}
    return value


_cyclic: dict[str, Any] = {"role": "assistant"}
_cyclic["self"] = _cyclic

#: a value JSON cannot carry: TypeError or ValueError, as ``json.dumps`` raises either
JSONError = (TypeError, ValueError)

BAD_MESSAGES: dict[str, tuple[Any, Any, str]] = {
    "message-not-a-dict": ("hello", ValueError, "'hello'"),
    "message-no-role": ({"content": "x"}, ValueError, "role"),
    "message-role-not-str": ({"role": 1, "content": "x"}, ValueError, "role"),
    "message-unencodable-object": ({"role": "tool", "content": object()}, TypeError, "content"),
    "message-set-value": ({"role": "tool", "content": {1, 2}}, TypeError, "content"),
    "message-integer-keys": ({"role": "tool", "content": {1: "a"}}, TypeError, "content"),
    "message-lone-surrogate": ({"role": "user", "content": "\ud800"}, JSONError, "content"),
    "message-deep-nesting": ({"role": "tool", "content": _deep(100_000)}, JSONError, "content"),
    "message-cycle": (_cyclic, JSONError, "self"),
}


@pytest.mark.parametrize(
    ("message", "error", "names"), list(BAD_MESSAGES.values()), ids=list(BAD_MESSAGES)
)
async def test_bad_message_from_an_agent(root: Path, message: Any, error: Any, names: str) -> None:
    """The call that made the bad message raises at once; the turn keeps its other
    output; nothing of the bad message reaches disk."""
    seen: list[BaseException] = []

    async def agent(turn: Turn) -> None:
        await turn.token("kept ")
        try:
            await turn.add_message(message)
        except Exception as exc:
            seen.append(exc)
        await turn.reply("text")

    async with Runtime(FileStore(root), agent) as rt:
        stream = await rt.start_turn(GOOD, "go")
        await rt.wait_stream(stream)
        messages = (await rt.get_session(GOOD)).messages
    assert len(seen) == 1 and isinstance(seen[0], error), seen
    assert names in str(seen[0]), str(seen[0])
    assert messages[-1]["content"] == "kept text"
    assert messages[-2]["content"] == "go"
    raw = b"".join(tree(root).values())
    assert b"\\ud800" not in raw and b"object at 0x" not in raw


BAD_TURN_CALLS: dict[str, tuple[Callable[[Turn], Awaitable[Any]], type[Exception], str]] = {
    "token-not-a-string": (lambda t: t.token(b"bytes"), TypeError, "bytes"),
    "title-empty": (lambda t: t.set_title("  "), ValueError, "'  '"),
    "title-not-a-string": (lambda t: t.set_title(7), ValueError, "7"),
    "tool-name-empty": (lambda t: t.tool("").__aenter__(), ValueError, "''"),
}


@pytest.mark.parametrize(
    ("call", "error", "names"), list(BAD_TURN_CALLS.values()), ids=list(BAD_TURN_CALLS)
)
async def test_bad_turn_call(
    root: Path, call: Callable[[Turn], Awaitable[Any]], error: type[Exception], names: str
) -> None:
    seen: list[BaseException] = []

    async def agent(turn: Turn) -> None:
        try:
            await call(turn)
        except Exception as exc:
            seen.append(exc)
        await turn.reply("after")

    async with Runtime(FileStore(root), agent) as rt:
        await rt.wait_stream(await rt.start_turn(GOOD, "go"))
        title = (await rt.get_session(GOOD)).title
        last = (await rt.get_session(GOOD)).messages[-1]
    assert len(seen) == 1 and isinstance(seen[0], error), seen
    assert names in str(seen[0])
    assert last["content"] == "after" and title == "good"


BAD_TURN_TEXT = {"prompt-empty": "", "prompt-blank": " \n\t", "prompt-not-a-string": 12}


@pytest.mark.parametrize("text", list(BAD_TURN_TEXT.values()), ids=list(BAD_TURN_TEXT))
async def test_bad_prompt(root: Path, text: Any) -> None:
    async with Runtime(FileStore(root), scripted_agent([Reply("x")])) as rt:
        before = tree(root)
        with pytest.raises(ValueError, match="non-empty string") as info:
            await rt.start_turn(GOOD, text)
        assert repr(text) in str(info.value)
        assert_nothing_written(root, before)


BAD_RUNTIME_ARGS: dict[str, tuple[dict[str, Any], str]] = {
    "runtime-checkpoint-interval-zero": ({"checkpoint_interval": 0}, "checkpoint_interval 0"),
    "runtime-checkpoint-interval-nan": (
        {"checkpoint_interval": float("nan")},
        "checkpoint_interval nan",
    ),
    "runtime-route-max-age-string": ({"route_max_age_days": "30"}, "route_max_age_days '30'"),
    "runtime-shutdown-grace-negative": ({"shutdown_grace": -1}, "shutdown_grace -1"),
    "runtime-on-shutdown-unknown": ({"on_shutdown": "pause"}, "on_shutdown 'pause'"),
}


@pytest.mark.parametrize(
    ("kwargs", "names"), list(BAD_RUNTIME_ARGS.values()), ids=list(BAD_RUNTIME_ARGS)
)
def test_bad_runtime_argument(tmp_path: Path, kwargs: dict[str, Any], names: str) -> None:
    with pytest.raises((ValueError, TypeError), match=names.replace("(", r"\(")):
        Runtime(FileStore(tmp_path / "store"), scripted_agent([]), **kwargs)
    assert not (tmp_path / "store").exists()


# -- damage on disk -------------------------------------------------------------------


def session_body(sid: str, n: int = 2, **fields: Any) -> bytes:
    body = Session(sid, title="t", messages=[{"role": "user", "content": "x"}] * n).to_dict()
    body.update(fields)
    return orjson.dumps(body)


@dataclass(frozen=True)
class Damage:
    """A damaged file: where it goes, its bytes, and the id whose load must fail with
    :class:`CorruptSession` naming the file (``None``: it is no session's file)."""

    name: str
    data: bytes
    load_fails: str | None


DAMAGE = {
    "disk-stray-object": Damage("notes.json", b'{"a": 1}', "notes"),
    "disk-stray-list": Damage("notes.json", b"[1,2,3]", "notes"),
    "disk-truncated-snapshot": Damage("cut.json", session_body("cut")[:40], "cut"),
    "disk-binary-garbage": Damage("bin.json", b"\x00\xff\xfe garbage \x01", "bin"),
    "disk-empty-file": Damage("empty.json", b"", "empty"),
    "disk-string-updated_at": Damage("late.json", session_body("late", updated_at="x"), "late"),
    "disk-inner-id-mismatch": Damage("mine.json", session_body("someone_else"), "mine"),
    "disk-messages-not-objects": Damage("nums.json", session_body("nums", messages=[1]), "nums"),
    "disk-damaged-bak-garbage": Damage(f"{GOOD}.json.bak", b"\x00garbage", None),
    "disk-damaged-bak-list": Damage(f"{GOOD}.json.bak", b"[1]", None),
    "disk-damaged-bak-string-gen": Damage(
        f"{GOOD}.json.bak", session_body(GOOD, 5, gen="abc"), None
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE.values()), ids=list(DAMAGE))
async def test_damaged_file(root: Path, damage: Damage) -> None:
    """Loading the damaged id is a ``CorruptSession`` naming the file; the store
    opens, recovers and serves the healthy session; the damaged bytes are kept aside
    unchanged and nothing else is written."""
    (root / "sessions" / damage.name).write_bytes(damage.data)
    before = tree(root)
    async with FileStore(root) as store:
        if damage.load_fails is not None:
            with pytest.raises(CorruptSession) as info:
                await store.load(damage.load_fails)
            assert damage.name in str(info.value)
        assert (await store.load(GOOD)).message_count == 3
        await store.recover()
        assert (await store.load(GOOD)).message_count == 3
        assert GOOD in [s.session_id for s in (await store.list_sessions()).sessions]
    assert_nothing_written(root, before, index=False)  # recovery may rebuild the index


async def test_snapshot_that_is_a_directory(root: Path) -> None:
    (root / "sessions" / "folder.json").mkdir()
    before = tree(root)
    async with FileStore(root) as store:
        with pytest.raises(StoreError, match=r"folder\.json: Is a directory"):
            await store.load("folder")
        report = await store.recover()
        assert report["scanned"] == 1
        assert (await store.load(GOOD)).message_count == 3
    assert (root / "sessions" / "folder.json").is_dir()
    assert_nothing_written(root, before, index=False)


def journal_line(base: int, content: str, **over: Any) -> bytes:
    rec = {"gen": 1, "base": base, "messages": [{"role": "user", "content": content}]}
    rec.update(updated_at=1.0, **over)
    return orjson.dumps(rec) + b"\n"


JOURNALS = {
    "journal-garbage-tail": (journal_line(3, "3") + b'{"gen": 1, "ba', ["0", "1", "2", "3"]),
    "journal-garbage-middle": (
        journal_line(3, "3") + b"garbage\n" + journal_line(4, "4"),
        ["0", "1", "2", "3"],
    ),
    "journal-wrong-field-types": (
        journal_line(3, "3") + journal_line("4", "4"),  # type: ignore[arg-type]
        ["0", "1", "2", "3"],
    ),
}


@pytest.mark.parametrize(("data", "kept"), list(JOURNALS.values()), ids=list(JOURNALS))
async def test_damaged_journal(root: Path, data: bytes, kept: list[str]) -> None:
    """The lines before the damage apply; loading never raises a raw error; reading
    writes nothing."""
    (root / "sessions" / f"{GOOD}.journal").write_bytes(data)
    before = tree(root)
    async with FileStore(root) as store:
        assert [m["content"] for m in (await store.load(GOOD)).messages] == kept
    assert_nothing_written(root, before)


async def test_index_row_with_a_string_updated_at(root: Path) -> None:
    with (root / "sessions" / "_index.jsonl").open("ab") as f:
        f.write(orjson.dumps({"session_id": "ghost", "title": "x", "updated_at": "soon"}) + b"\n")
    async with FileStore(root) as store:
        assert [s.session_id for s in (await store.list_sessions()).sessions] == [GOOD]
        assert (await store.load(GOOD)).message_count == 3
    assert not (root / "sessions" / "ghost.json").exists()


# -- HTTP -------------------------------------------------------------------------------


@asynccontextmanager
async def http_client(root: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app over a FileStore runtime, on ASGITransport (the runtime's task group is
    entered and left in the test's task, hence not a fixture)."""
    rt = Runtime(FileStore(root), scripted_agent([Reply("x")]))
    app = create_app(rt)
    async with rt:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            yield c


JSON = {"Content-Type": "application/json"}
TURNS = f"/api/sessions/{GOOD}/turns"
EVENTS = "/api/streams/0123456789abcdef.healthy/events"

HTTP: dict[str, tuple[str, str, dict[str, Any], int, str]] = {
    "http-malformed-json": ("POST", TURNS, {"content": b"{nope", "headers": JSON}, 400, "JSON"),
    "http-json-not-an-object": (
        "POST",
        TURNS,
        {"content": b"[1]", "headers": JSON},
        400,
        "array",
    ),
    "http-unknown-field": (
        "POST",
        TURNS,
        {"json": {"message": "x", "extra": 1}},
        400,
        "extra",
    ),
    "http-message-not-a-string": ("POST", TURNS, {"json": {"message": 5}}, 400, "5"),
    "http-wrong-content-type": (
        "POST",
        TURNS,
        {"content": b'{"message": "hi"}', "headers": {"Content-Type": "text/plain"}},
        415,
        "application/json",
    ),
    "http-oversized-body": (
        "POST",
        TURNS,
        {"content": b'{"message": "' + b"x" * (2 << 20) + b'"}', "headers": JSON},
        413,
        "bytes",
    ),
    "http-title-with-nul": ("POST", "/api/sessions", {"json": {"title": "a\x00b"}}, 400, "title"),
    "http-title-too-long": ("POST", "/api/sessions", {"json": {"title": "t" * 5000}}, 400, "title"),
    "http-bad-after-seq": ("GET", EVENTS + "?after_seq=-1", {}, 400, "-1"),
    "http-after-seq-not-a-number": ("GET", EVENTS + "?after_seq=abc", {}, 400, "abc"),
    "http-bad-last-event-id": ("GET", EVENTS, {"headers": {"Last-Event-ID": "1.5"}}, 400, "1.5"),
    "http-bad-stream-id": ("GET", "/api/streams/nope/events", {}, 404, "nope"),
    "http-bad-session-id": ("GET", "/api/sessions/a.b", {}, 400, "a.b"),
    "http-bad-limit": ("GET", "/api/sessions?limit=0", {}, 400, "0"),
    "http-bad-cursor": ("GET", "/api/sessions?cursor=zzz", {}, 400, "zzz"),
    "http-foreign-host": ("GET", "/api/sessions", {"headers": {"Host": "evil.example"}}, 0, "evil"),
}


@pytest.mark.parametrize(
    ("method", "url", "kw", "status", "names"), list(HTTP.values()), ids=list(HTTP)
)
async def test_bad_http_request(
    root: Path,
    method: str,
    url: str,
    kw: dict[str, Any],
    status: int,
    names: str,
) -> None:
    async with http_client(root) as client:
        before = tree(root)
        r = await client.request(method, url, **kw)
        assert_nothing_written(root, before)
    if status == 0:  # a foreign Host: refused before routing (DNS rebinding)
        assert r.status_code in (400, 403, 421), r.text
    else:
        assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"]
    assert names in body["detail"], body
    assert_nothing_written(root, before)


# -- CLI --------------------------------------------------------------------------------

CLI = {
    "cli-bad-agent-spec": (["run", "no_such_module:agent", "hi"], 2, "no_such_module"),
    "cli-agent-not-callable": (["run", "os:sep", "hi"], 2, "os:sep"),
    "cli-bad-session-id": (["sessions", "show", "../x"], 2, "'../x'"),
    "cli-unknown-session": (["sessions", "show", "missing"], 1, "missing"),
    "cli-bad-checkpoint-interval": (
        ["run", "examples/echo_agent.py:agent", "hi", "--checkpoint-interval", "-1"],
        2,
        "-1",
    ),
    "cli-bad-prune-age": (["routes", "prune", "--max-age-days", "abc"], 2, "abc"),
}


@pytest.mark.parametrize(("argv", "code", "names"), list(CLI.values()), ids=list(CLI))
def test_bad_command_line(
    root: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], code: int, names: str
) -> None:
    monkeypatch.setenv("RUNTIME_HOME", str(root))
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    monkeypatch.setattr(sys, "argv", ["runtime", *argv])
    before = tree(root)
    err = io.StringIO()
    with redirect_stderr(err):
        try:
            got = cli_main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            got = int(exc.code or 0)
    assert got == code, err.getvalue()
    assert names in err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert len(err.getvalue().strip().splitlines()) <= 3
    assert_nothing_written(root, before)
    assert os.environ["RUNTIME_HOME"] == str(root)
