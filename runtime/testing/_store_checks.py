"""The store conformance checks (see :mod:`runtime.testing`)."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
)
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, cast

import orjson

from .._events import Event
from .._exceptions import (
    EmptyOverwriteRefused,
    InvalidCursor,
    InvalidSessionId,
    MetadataOnlyError,
    MetadataOnlySaveError,
    SessionNotFound,
    StoreClosed,
)
from .._session import Message, Session
from ..stores.abc import SessionPage, Store

if TYPE_CHECKING:
    pass


#: Makes a store on empty backing data: ``async with factory() as store``.
StoreFactory = Callable[[], AbstractAsyncContextManager[Store]]
#: Opens a new store on the same backing data as the (closed) store it is given.
Reopen = Callable[[Store], AbstractAsyncContextManager[Store]]


class StoreCheck(Protocol):
    """The signature of every ``check_*`` function of :data:`STORE_CHECKS`."""

    __name__: str

    def __call__(
        self, factory: StoreFactory, *, reopen: Reopen | None = None
    ) -> Awaitable[None]: ...


# -- assertion helpers (no pytest here: users run these under any framework) ------------


def _require(condition: bool, message: str) -> None:
    """Raise :class:`AssertionError` with ``message`` unless ``condition``.

    Used instead of ``assert`` so the checks still run under ``python -O``.
    """
    if not condition:
        raise AssertionError(message)


def _equal(actual: object, expected: object, what: str) -> None:
    """:raises AssertionError: if ``actual != expected``, showing both."""
    if actual != expected:
        raise AssertionError(f"{what}:\n  expected {expected!r}\n  got      {actual!r}")


class _Caught:
    """The exception a :func:`_raises` block caught."""

    value: BaseException | None = None


@contextmanager
def _raises(expected: type[BaseException], what: str) -> Iterator[_Caught]:
    """Require the block to raise ``expected`` (or a subclass).

    :raises AssertionError: if the block raised nothing or another :class:`Exception`.
    """
    caught = _Caught()
    try:
        yield caught
    except expected as exc:
        caught.value = exc
        return
    except Exception as exc:
        raise AssertionError(
            f"{what}: expected {expected.__name__}, got {type(exc).__name__}: {exc}"
        ) from exc
    raise AssertionError(f"{what}: expected {expected.__name__}, nothing was raised")


class _Stores:
    """Opens the stores of one check and closes them when the check ends."""

    def __init__(self, factory: StoreFactory, reopen: Reopen | None, stack: AsyncExitStack):
        self._factory = factory
        self._reopen = reopen
        self._stack = stack

    @property
    def persistent(self) -> bool:
        """True if :meth:`restart` really opens a second store."""
        return self._reopen is not None

    async def fresh(self) -> Store:
        """A new opened store on empty backing data."""
        store = await self._stack.enter_async_context(self._factory())
        _require(
            (await store.recover())["scanned"] == 0,
            f"factory() must give a store on empty backing data; {store!r} already holds sessions",
        )
        return store

    async def alongside(self, store: Store) -> Store:
        """A second store open on the same data as ``store`` at the same time, as
        another process would have (needs ``reopen``; for shared stores)."""
        assert self._reopen is not None
        return await self._stack.enter_async_context(self._reopen(store))

    async def restart(self, store: Store) -> Store:
        """Close ``store`` and open another on its data, as after a process restart;
        without ``reopen``, ``store`` itself (still open)."""
        if self._reopen is None:
            return store
        await store.aclose()
        return await self._stack.enter_async_context(self._reopen(store))


@asynccontextmanager
async def _stores(factory: StoreFactory, reopen: Reopen | None) -> AsyncIterator[_Stores]:
    async with AsyncExitStack() as stack:
        yield _Stores(factory, reopen, stack)


def _messages(n: int, tag: str = "m") -> list[Message]:
    """``n`` alternating user/assistant messages whose contents name ``tag`` and the index."""
    return [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"{tag} {i}"} for i in range(n)
    ]


def _session(**fields: Any) -> Session:
    """A session with a fixed ``updated_at`` (saved with ``touch_updated_at=False``)."""
    fields.setdefault("title", "conformance")
    fields.setdefault("created_at", 1_700_000_000.0)
    fields.setdefault("updated_at", 1_700_000_000.0)
    return Session(**fields)


async def _stored(store: Store, session_id: str) -> dict[str, Any]:
    """The full stored state of a session, as a dict."""
    return (await store.load(session_id)).to_dict()


async def _listed_ids(store: Store) -> list[str]:
    """Ids of every listed session, following all cursors."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_sessions(limit=1000, cursor=cursor)
        ids.extend(s.session_id for s in page.sessions)
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


def _event(seq: int, stream_id: str, session_id: str) -> Event:
    data = {"text": f"token {seq} ✓", "nested": {"seq": seq, "items": [1, 2.5, None, True]}}
    return Event(seq, stream_id, session_id, "token", data, 1_700_000_000.0 + seq / 8)


# -- the checks -------------------------------------------------------------------------


async def check_save_load_round_trip(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """``save()`` then ``load()`` gives back every field exactly: id, title, model,
    model_provider, workspace, both timestamps, messages (tool calls, markers, unicode,
    nested content), the pending fields and nested metadata; ``load_metadata()`` gives
    every field but the messages. Also after a restart.

    Rule: ``save`` is durable; ``load`` returns the whole session (DESIGN.md, "Persistence
    contract").
    """
    messages: list[Message] = [
        {"role": "system", "content": "You are terse.", "timestamp": 1_700_000_000.125},
        {"role": "user", "content": 'Ünïcødé, emoji 🚀, quotes " and \\ and \n newline'},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "grep", "arguments": '{"pattern": "TaskGroup"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "name": "grep", "content": "12 hits"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "part"}, {"type": "image_url", "image_url": {}}],
            "_recovered": True,
        },
        {"role": "assistant", "content": "partial", "_partial": True, "_error": False},
        {"role": "assistant", "content": "x", "_error": True, "type": "interrupted", "n": 2**40},
    ]
    original = Session(
        "Round_trip-01",
        title="Ünïcødé title 🚀",
        model="gpt-x",
        model_provider="openai",
        workspace="/tmp/ws with space",
        created_at=1_700_000_000.25,
        updated_at=1_700_000_123.5,
        messages=messages,
        active_stream_id="stream-1",
        pending_user_message="next question",
        pending_started_at=1_700_000_120.75,
        metadata={"tags": ["a", "b"], "nested": {"x": 1, "y": [None, 1.5]}, "flag": False},
    )
    expected = orjson.loads(orjson.dumps(original.to_dict()))
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        await store.save(original, touch_updated_at=False)
        for label in ("after save", "after restart"):
            loaded = await store.load(original.session_id)
            _require(loaded is not original, f"load() must return a new object ({label})")
            _require(not loaded.metadata_only, f"load() gave a metadata-only session ({label})")
            _equal(loaded.to_dict(), expected, f"load() after save() ({label})")
            meta = await store.load_metadata(original.session_id)
            _equal(
                meta.meta_dict(), original.meta_dict(), f"load_metadata() after save() ({label})"
            )
            store = await stores.restart(store)


async def check_touch_updated_at(factory: StoreFactory, *, reopen: Reopen | None = None) -> None:
    """``save(touch_updated_at=False)`` keeps ``updated_at``; the default sets it to the
    current time (epoch seconds) on the object and in the store; ``created_at`` never
    changes.

    Rule: ``Store.save`` docstring, ``touch_updated_at`` (stale-stream
    repair saves without touching ``updated_at``).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        session = _session(messages=_messages(1), updated_at=1000.0, created_at=900.0)
        await store.save(session, touch_updated_at=False)
        _equal(session.updated_at, 1000.0, "updated_at of the object after touch_updated_at=False")
        session.messages.append({"role": "assistant", "content": "more"})
        await store.save(session, touch_updated_at=False, skip_index=True)
        store = await stores.restart(store)
        loaded = await store.load(session.session_id)
        _equal(loaded.updated_at, 1000.0, "stored updated_at after touch_updated_at=False")
        _equal(
            (await store.load_metadata(session.session_id)).updated_at,
            1000.0,
            "load_metadata().updated_at after touch_updated_at=False",
        )
        before = time.time()
        await store.save(loaded)
        after = time.time()
        _require(
            before <= loaded.updated_at <= after,
            f"save() must set updated_at to the current time: {loaded.updated_at!r} is not "
            f"within [{before!r}, {after!r}]",
        )
        store = await stores.restart(store)
        stored = await store.load(session.session_id)
        _equal(stored.updated_at, loaded.updated_at, "stored updated_at after a touching save")
        _equal(stored.created_at, 900.0, "created_at after saves")


async def check_skip_index_save_is_durable(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """Checkpoint saves (``skip_index=True``) are as durable as full saves: appended
    messages, a growing last message (streamed text), and changed metadata fields are
    all visible to ``load()`` and ``load_metadata()``, also after a restart, and a later
    full save keeps them.

    Rule: DESIGN.md, "Life of a turn" (checkpoints are ``skip_index=True`` saves) and
    ``Store.save`` docstring (what such a save persists).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        session = _session(messages=_messages(2), active_stream_id="s1", pending_user_message="q")
        await store.save(session, touch_updated_at=False)
        session.messages.append({"role": "assistant", "content": "Sear"})
        await store.save(session, skip_index=True, touch_updated_at=False)
        session.messages[-1]["content"] = "Searching the library…"
        session.messages[-1]["_partial"] = True
        await store.save(session, skip_index=True, touch_updated_at=False)
        session.messages.append({"role": "tool", "tool_call_id": "c1", "content": "42"})
        session.title = "renamed mid-turn"
        session.metadata = {"usage": {"prompt_tokens": 7}}
        session.model = "m2"
        await store.save(session, skip_index=True, touch_updated_at=False)
        expected = orjson.loads(orjson.dumps(session.to_dict()))
        for label in ("after checkpoint saves", "after restart"):
            _equal(await _stored(store, session.session_id), expected, f"load() {label}")
            meta = await store.load_metadata(session.session_id)
            _equal(meta.message_count, 4, f"load_metadata().message_count {label}")
            _equal(meta.title, "renamed mid-turn", f"load_metadata().title {label}")
            store = await stores.restart(store)
        final = await store.load(session.session_id)
        final.active_stream_id = final.pending_user_message = None
        await store.save(final, touch_updated_at=False)
        store = await stores.restart(store)
        _equal(
            await _stored(store, session.session_id),
            final.to_dict(),
            "load() after the full save that follows checkpoints",
        )


async def check_loads_are_independent_copies(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """The store keeps its own copy: mutating a saved object or a loaded object (its
    messages, a message dict, its metadata) without saving changes nothing stored.

    Rule: ``Store.load`` docstring ("as a new object"); only ``save()`` changes the
    stored state (DESIGN.md, "Persistence contract").
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        session = _session(messages=_messages(2), metadata={"k": {"v": 1}})
        await store.save(session, touch_updated_at=False)
        expected = orjson.loads(orjson.dumps(session.to_dict()))
        session.messages.append({"role": "user", "content": "unsaved"})
        session.messages[0]["content"] = "edited, unsaved"
        session.metadata["k"]["v"] = 2
        loaded = await store.load(session.session_id)
        loaded.messages[1]["content"] = "edited copy"
        loaded.messages.clear()
        loaded.metadata["k"]["v"] = 3
        loaded.title = "changed"
        _equal(
            await _stored(store, session.session_id),
            expected,
            "stored state after mutating the saved and the loaded objects without saving",
        )


async def check_missing_session(factory: StoreFactory, *, reopen: Reopen | None = None) -> None:
    """An id that was never stored: ``load``, ``load_metadata`` and ``delete`` raise
    :class:`~runtime.SessionNotFound` (a ``LookupError``) naming the id; ``exists`` is
    False; ``load_events`` is ``[]``.

    Rule: ``Store`` docstrings; DESIGN.md error tree (``SessionNotFound(Error, LookupError)``).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        sid = "never-saved"
        for name, call in (
            ("load", store.load),
            ("load_metadata", store.load_metadata),
            ("delete", store.delete),
        ):
            with _raises(SessionNotFound, f"{name}({sid!r}) of a missing session") as caught:
                await call(sid)
            _require(isinstance(caught.value, LookupError), "SessionNotFound is a LookupError")
            _require(sid in str(caught.value), f"the {name} error names the id: {caught.value}")
        _equal(await store.exists(sid), False, f"exists({sid!r}) of a missing session")
        _equal(await store.load_events(sid, "s1"), [], "load_events() of a missing session")


async def check_load_metadata(factory: StoreFactory, *, reopen: Reopen | None = None) -> None:
    """``load_metadata()`` (and every row of ``list_sessions()``) is metadata-only: the
    right ``message_count`` and fields, while reading ``.messages`` (or ``to_dict()``)
    raises :class:`~runtime.MetadataOnlyError`.

    Rule: DESIGN.md, "Persistence contract" (``load_metadata`` returns an object whose
    messages are not loaded).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        session = _session(messages=_messages(3), title="meta", model="m")
        await store.save(session, touch_updated_at=False)
        store = await stores.restart(store)
        meta = await store.load_metadata(session.session_id)
        (row,) = (await store.list_sessions()).sessions
        for label, obj in (("load_metadata()", meta), ("a list_sessions() row", row)):
            _require(obj.metadata_only, f"{label} must be metadata_only")
            _equal(obj.message_count, 3, f"{label}.message_count")
            _equal(obj.meta_dict(), session.meta_dict(), f"{label} fields")
            with _raises(MetadataOnlyError, f"reading .messages of {label}"):
                _ = obj.messages
            with _raises(MetadataOnlyError, f"{label}.to_dict()"):
                obj.to_dict()


async def check_metadata_only_save_refused(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """Saving a metadata-only session (from ``load_metadata()`` or a list row), full or
    checkpoint, raises :class:`~runtime.MetadataOnlySaveError` (a ``RuntimeError``), even
    after editing its fields, and the stored state is unchanged. It is raised before any
    I/O: a closed store raises it too, not :class:`~runtime.StoreClosed`.

    Rule: DESIGN.md, "Persistence contract" (cannot be saved, before any I/O);
    hermes-webui lost a 1,000-message conversation this way.
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        session = _session(messages=_messages(4))
        await store.save(session, touch_updated_at=False)
        before = await _stored(store, session.session_id)
        meta = await store.load_metadata(session.session_id)
        (row,) = (await store.list_sessions()).sessions
        meta.title = "edited metadata-only"
        for label, obj in (("load_metadata()", meta), ("a list row", row)):
            for skip_index, touch in ((False, True), (True, True), (False, False)):
                what = f"save({label}, skip_index={skip_index}, touch_updated_at={touch})"
                with _raises(MetadataOnlySaveError, what) as caught:
                    await store.save(obj, skip_index=skip_index, touch_updated_at=touch)
                _require(
                    isinstance(caught.value, RuntimeError),
                    "MetadataOnlySaveError must be a RuntimeError",
                )
        store = await stores.restart(store)
        _equal(
            await _stored(store, session.session_id),
            before,
            "stored state after refused metadata-only saves",
        )
        await store.aclose()
        with _raises(MetadataOnlySaveError, "save(metadata-only) on a closed store"):
            await store.save(meta)


async def check_shrinking_save_keeps_backup(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """A save that shrinks the stored message list succeeds and keeps a backup of the
    previous state: ``recover()`` (after a restart) restores the longer state and reports
    ``restored == 1``; a second ``recover()`` restores nothing.

    Rule: DESIGN.md, "Persistence contract" (a shrinking save keeps a backup; recover
    restores a live session with fewer messages than its backup).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        session = _session(messages=_messages(5, "long"))
        await store.save(session, touch_updated_at=False)
        longer = await _stored(store, session.session_id)
        session.messages = session.messages[:2]
        await store.save(session, touch_updated_at=False)
        _equal(
            (await store.load(session.session_id)).messages,
            session.messages,
            "load() after a shrinking save (the save itself must succeed)",
        )
        store = await stores.restart(store)
        report = await store.recover()
        _equal(
            dict(report),
            {"scanned": 1, "restored": 1, "orphaned_backups": 0, "quarantined": 0},
            "recover() after a shrinking save",
        )
        _equal(
            await _stored(store, session.session_id),
            longer,
            "state restored by recover() after a shrinking save",
        )
        _equal(
            dict(await store.recover()),
            {"scanned": 1, "restored": 0, "orphaned_backups": 0, "quarantined": 0},
            "a second recover()",
        )


async def check_growing_save_keeps_no_backup(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """Saves that grow the message list keep no backup that ``recover()`` would restore,
    also when a growing save follows a shrinking one: recover reports ``restored == 0``
    and the newest state stays.

    Rule: DESIGN.md, "Persistence contract" (a save that grows the list keeps none).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        grown = _session(messages=_messages(1))
        await store.save(grown, touch_updated_at=False)
        grown.messages = _messages(3)
        await store.save(grown, touch_updated_at=False)
        regrown = _session(messages=_messages(4))
        await store.save(regrown, touch_updated_at=False)
        regrown.messages = regrown.messages[:1]
        await store.save(regrown, touch_updated_at=False)
        regrown.messages = _messages(6, "newest")
        await store.save(regrown, touch_updated_at=False)
        await _restart_restores_nothing(stores, store, (grown, regrown), "growing saves")


async def _restart_restores_nothing(
    stores: _Stores, store: Store, sessions: tuple[Session, ...], after: str
) -> None:
    """Restart ``store``: ``recover()`` scans ``sessions`` and restores none of them, and
    each is stored as it is now."""
    expected = {s.session_id: s.to_dict() for s in sessions}
    store = await stores.restart(store)
    _equal(
        dict(await store.recover()),
        {"scanned": len(sessions), "restored": 0, "orphaned_backups": 0, "quarantined": 0},
        f"recover() after {after}",
    )
    for sid, state in expected.items():
        _equal(await _stored(store, sid), state, f"state after {after} and recover()")


async def check_discard_backup_keeps_none(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """A save with ``discard_backup=True`` rewrites the history on purpose: it drops the
    backup an earlier shrinking save kept, keeps none of its own, and may empty the list
    while a stream is pending. After a restart, ``recover()`` restores nothing
    (``restored == 0``) and the rewritten state stays, also once later saves grow the
    list again below the dropped backup's length.

    Rule: a deliberate rewrite (an edit or regenerate in a chat UI) must not come back
    at the next start; the backup rule (DESIGN.md, "Persistence contract") is for
    accidental shrinks.
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        session = _session(messages=_messages(6, "long"))
        await store.save(session, touch_updated_at=False)
        session.messages = session.messages[:4]
        await store.save(session, touch_updated_at=False)  # an accidental shrink: a backup
        session.messages = session.messages[:1]
        await store.save(session, touch_updated_at=False, discard_backup=True)
        session.messages.append({"role": "assistant", "content": "rewritten"})
        await store.save(session, touch_updated_at=False)
        pending = _session(messages=_messages(3, "pending"))
        await store.save(pending, touch_updated_at=False)
        pending.messages = []
        pending.active_stream_id = "stream-rewind"
        await store.save(pending, touch_updated_at=False, discard_backup=True)
        _equal(
            (await store.load(pending.session_id)).messages,
            [],
            "load() after emptying the list with discard_backup=True while a stream is pending",
        )
        await _restart_restores_nothing(
            stores, store, (session, pending), "saves with discard_backup=True"
        )


async def check_empty_overwrite_refused_while_pending(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """Replacing stored messages with ``[]`` while a stream is pending raises
    :class:`~runtime.EmptyOverwriteRefused` and leaves the stored state unchanged —
    whether the pending mark (``active_stream_id`` or ``pending_user_message``) is stored
    or on the object being saved, for full and checkpoint saves.

    Rule: DESIGN.md, "Persistence contract" (refused while a stream is pending).
    """
    cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("stored active_stream_id", {"active_stream_id": "s1"}, {}),
        ("stored pending_user_message", {"pending_user_message": "q"}, {}),
        ("new active_stream_id", {}, {"active_stream_id": "s2"}),
        ("new pending_user_message", {}, {"pending_user_message": "q2"}),
    ]
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        before: dict[str, dict[str, Any]] = {}
        for i, (_, stored_fields, _) in enumerate(cases):
            session = _session(session_id=f"pending-{i}", messages=_messages(3), **stored_fields)
            await store.save(session, touch_updated_at=False)
            before[session.session_id] = await _stored(store, session.session_id)
        store = await stores.restart(store)
        for i, (label, _, new_fields) in enumerate(cases):
            sid = f"pending-{i}"
            for skip_index in (False, True):
                emptied = await store.load(sid)
                emptied.messages = []
                for name, value in new_fields.items():
                    setattr(emptied, name, value)
                with _raises(EmptyOverwriteRefused, f"empty save with {label}") as caught:
                    await store.save(emptied, skip_index=skip_index)
                _require(sid in str(caught.value), f"the error names the session: {caught.value}")
        store = await stores.restart(store)
        for sid, state in before.items():
            _equal(await _stored(store, sid), state, f"stored state of {sid} after refusals")
        _equal(
            dict(await store.recover()),
            {"scanned": len(cases), "restored": 0, "orphaned_backups": 0, "quarantined": 0},
            "recover() after refused saves (they must leave no backup either)",
        )


async def check_empty_overwrite_allowed_when_idle(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """With no stream pending (stored or new), saving ``[]`` over stored messages is a
    normal shrinking save: it succeeds and keeps a backup that ``recover()`` restores.

    Rule: DESIGN.md, "Persistence contract" (the refusal applies only while a stream is
    pending; a shrinking save keeps a backup).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        session = _session(messages=_messages(2))
        await store.save(session, touch_updated_at=False)
        previous = await _stored(store, session.session_id)
        session.messages = []
        await store.save(session, touch_updated_at=False)
        _equal((await store.load(session.session_id)).messages, [], "messages after clearing")
        store = await stores.restart(store)
        _equal(
            dict(await store.recover()),
            {"scanned": 1, "restored": 1, "orphaned_backups": 0, "quarantined": 0},
            "recover() after clearing an idle session",
        )
        _equal(await _stored(store, session.session_id), previous, "state after recover()")


async def check_new_session_in_memory_only(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """``new_session()`` stores nothing: the session can be loaded (fully and
    metadata-only) by id and ``exists`` on that store, but it is not listed,
    ``recover()`` scans nothing, and after a restart it does not exist. Deleting it
    forgets it. Its first ``save()`` stores it.

    Rule: DESIGN.md, "Persistence contract" (new sessions live in memory until they have
    real state) (no file until the first real save; fetchable by id in
    between; five new sessions create nothing).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        drafts = [store.new_session(title=f"draft {i}") for i in range(5)]
        sid = drafts[0].session_id
        _require(len({d.session_id for d in drafts}) == 5, "new_session() ids must be unique")
        loaded = await store.load(sid)
        _equal(loaded.to_dict(), drafts[0].to_dict(), "load() of an unsaved new session")
        meta = await store.load_metadata(sid)
        _require(meta.metadata_only, "load_metadata() of a new session is metadata-only")
        _equal(meta.title, "draft 0", "load_metadata().title of a new session")
        _equal(await store.exists(sid), True, "exists() of a new session on its own store")
        _equal(await _listed_ids(store), [], "list_sessions() with only new sessions")
        _equal(
            dict(await store.recover()),
            {"scanned": 0, "restored": 0, "orphaned_backups": 0, "quarantined": 0},
            "recover() with five unsaved new sessions (nothing may be stored)",
        )
        await store.delete(drafts[4].session_id)
        with _raises(SessionNotFound, "load() of a deleted unsaved session"):
            await store.load(drafts[4].session_id)
        await store.save(drafts[1])
        _equal(await _listed_ids(store), [drafts[1].session_id], "list after the first save")
        if stores.persistent:
            store = await stores.restart(store)
            _equal(await store.exists(sid), False, "exists() of an unsaved session after restart")
            with _raises(SessionNotFound, "load() of an unsaved session after restart"):
                await store.load(sid)
            _equal(
                await _stored(store, drafts[1].session_id),
                drafts[1].to_dict(),
                "the saved new session after restart",
            )


async def check_list_hides_empty_untitled(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """``list_sessions()`` hides sessions titled "Untitled" with no messages, unless a
    stream is active or a message is pending; they stay loadable. A hidden session that
    gets a title, a message or a stream shows, and hides again when idle and empty.

    Rule: DESIGN.md, "Persistence contract"  (hermes-webui listed
    hundreds of empty sessions).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        hidden = _session(session_id="hidden", title="Untitled")
        shown = [
            _session(session_id="active", title="Untitled", active_stream_id="s1"),
            _session(session_id="pending", title="Untitled", pending_user_message="q"),
            _session(session_id="titled", title="Named"),
            _session(session_id="one-message", title="Untitled", messages=_messages(1)),
        ]
        for s in (hidden, *shown):
            await store.save(s, touch_updated_at=False)
        expected = sorted(s.session_id for s in shown)
        for label in ("after saves", "after restart"):
            _equal(sorted(await _listed_ids(store)), expected, f"listed sessions {label}")
            _equal(
                (await store.load("hidden")).title, "Untitled", f"load() of a hidden one {label}"
            )
            store = await stores.restart(store)
        active = await store.load("active")
        active.active_stream_id = None
        await store.save(active, touch_updated_at=False)
        hidden.title = "now named"
        await store.save(hidden, touch_updated_at=False)
        store = await stores.restart(store)
        _equal(
            sorted(await _listed_ids(store)),
            sorted(["hidden", "pending", "titled", "one-message"]),
            "listed sessions after one got a title and one's stream ended",
        )


async def check_list_sorted_newest_first(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """``list_sessions()`` sorts by ``updated_at`` descending, ties by ``session_id``
    ascending; a touching save moves a session to the top, a
    ``touch_updated_at=False`` save does not move it.

    Rule: DESIGN.md, "Persistence contract" (sorted by ``updated_at`` descending);
    ``Store.list_sessions`` docstring (ties by ``session_id``).
    """
    times = {"a": 5.0, "b": 1.0, "c": 3.0, "d": 3.0, "e": 2.0, "f": 1_000.0}
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        for sid, t in times.items():
            await store.save(_session(session_id=sid, updated_at=t), touch_updated_at=False)
        store = await stores.restart(store)
        _equal(await _listed_ids(store), ["f", "a", "c", "d", "e", "b"], "list order")
        b = await store.load("b")
        await store.save(b)
        f = await store.load("f")
        f.title = "retitled without touching"
        await store.save(f, touch_updated_at=False)
        store = await stores.restart(store)
        _equal(
            await _listed_ids(store),
            ["b", "f", "a", "c", "d", "e"],
            "list order after a touching save of b and an untouched save of f",
        )


async def check_list_pagination(factory: StoreFactory, *, reopen: Reopen | None = None) -> None:
    """Cursor pagination: 23 visible sessions (with ``updated_at`` ties) among hidden ones,
    ``limit=5``, give pages of 5, 5, 5, 5, 3 whose concatenation is the full order, with
    no duplicates and no gaps; the last page's ``next_cursor`` is ``None``, also when the
    last page is exactly full; a cursor stays valid across a restart.

    Rule: DESIGN.md, "Persistence contract" (``list_sessions()`` is paginated);
    ``Store.list_sessions`` docstring.
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        visible: list[tuple[float, str]] = []
        for i in range(23):
            sid = f"s{i:02d}"
            t = 1_000.0 + (i * 7) % 9  # many ties
            await store.save(_session(session_id=sid, updated_at=t), touch_updated_at=False)
            visible.append((-t, sid))
        for i in range(4):
            await store.save(
                _session(session_id=f"hidden{i}", title="Untitled", updated_at=1_003.0),
                touch_updated_at=False,
            )
        expected = [sid for _, sid in sorted(visible)]
        pages: list[SessionPage] = []
        cursor: str | None = None
        while len(pages) < 10:
            page = await store.list_sessions(limit=5, cursor=cursor)
            pages.append(page)
            cursor = page.next_cursor
            if cursor is None:
                break
            if len(pages) == 2:
                store = await stores.restart(store)
        _equal([len(p.sessions) for p in pages], [5, 5, 5, 5, 3], "page sizes with limit=5")
        got = [s.session_id for p in pages for s in p.sessions]
        _equal(got, expected, "concatenated pages (duplicates or gaps?)")
        _require(all(s.metadata_only for p in pages for s in p.sessions), "rows are metadata-only")
        exact = await store.list_sessions(limit=23)
        _equal(len(exact.sessions), 23, "one page with limit=23")
        _equal(exact.next_cursor, None, "next_cursor of an exactly full last page")
        _equal(
            (await store.list_sessions(limit=1000)).next_cursor, None, "next_cursor of limit=1000"
        )


async def check_list_active(factory: StoreFactory, *, reopen: Reopen | None = None) -> None:
    """``list_sessions(active=True)`` lists exactly the sessions with an active stream,
    an empty "Untitled" one included, in the listing's order, with cursors: 11 of 33
    sessions with ``limit=4`` give pages of 4, 4, 3 (the last with no ``next_cursor``,
    also when exactly full); a session whose stream ends leaves it and one whose
    stream starts joins it, across a restart.

    Rule: ``Store.list_sessions`` docstring (what a resume sweep reads).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        order: list[tuple[float, str]] = []
        for i in range(30):
            sid = f"s{i:02d}"
            t = 1_000.0 + (i * 5) % 7  # many ties
            stream = f"stream-{i}" if i % 3 == 0 else None
            session = _session(session_id=sid, updated_at=t, active_stream_id=stream)
            await store.save(session, touch_updated_at=False)
            if stream is not None:
                order.append((-t, sid))
        for i in range(2):
            hidden = _session(session_id=f"hidden{i}", title="Untitled", updated_at=1_003.0)
            await store.save(hidden, touch_updated_at=False)
        untitled = _session(
            session_id="untitled-live",
            title="Untitled",
            updated_at=1_004.0,
            active_stream_id="stream-u",
        )
        await store.save(untitled, touch_updated_at=False)
        order.append((-1_004.0, "untitled-live"))

        async def pages(limit: int) -> list[list[str]]:
            out: list[list[str]] = []
            cursor: str | None = None
            while len(out) < 20:
                page = await store.list_sessions(limit=limit, cursor=cursor, active=True)
                out.append([s.session_id for s in page.sessions])
                for row in page.sessions:
                    _require(row.metadata_only, "rows of an active listing are metadata-only")
                    _require(
                        row.active_stream_id is not None,
                        f"{row.session_id} listed as active without an active stream",
                    )
                cursor = page.next_cursor
                if cursor is None:
                    return out
            raise AssertionError("an active listing never ended (a cursor loop?)")

        expected = [sid for _, sid in sorted(order)]
        for label in ("after saves", "after restart"):
            got = await pages(4)
            _equal([len(p) for p in got], [4, 4, 3], f"page sizes with limit=4 {label}")
            _equal([sid for p in got for sid in p], expected, f"active sessions {label}")
            store = await stores.restart(store)

        ended = await store.load("s03")
        ended.active_stream_id = None
        await store.save(ended, touch_updated_at=False)
        started = await store.load("s04")
        started.active_stream_id = "stream-4"
        await store.save(started, touch_updated_at=False)
        store = await stores.restart(store)
        order = [(t, sid) for t, sid in order if sid != "s03"] + [(-(1_000.0 + 20 % 7), "s04")]
        expected = [sid for _, sid in sorted(order)]
        _equal(
            await pages(11),
            [expected],
            "one exactly full page after a stream ended (s03) and one started (s04)",
        )


async def check_list_bad_limit_and_cursor(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """``list_sessions()`` refuses a limit outside 1..1000 or not an ``int`` with
    ``ValueError`` and a cursor it did not hand out with :class:`~runtime.InvalidCursor`
    (a ``ValueError``); both messages name the value.

    Rule: ``Store.list_sessions`` docstring; team rule "bad input gets a clear error
    that names the value and the rule".
    """
    forged = [
        "not-a-cursor",
        "",
        "!!!!",
        base64.urlsafe_b64encode(b"[1.0]").decode(),
        base64.urlsafe_b64encode(b'{"updated_at": 1}').decode(),
        base64.urlsafe_b64encode(orjson.dumps([1.0, "../escape"])).decode(),
        base64.urlsafe_b64encode(orjson.dumps(["x", "id"])).decode(),
    ]
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        for i in range(3):
            await store.save(_session(session_id=f"s{i}"))
        for limit in (0, -1, 1001, True, 2.5, "5", None):
            with _raises(ValueError, f"list_sessions(limit={limit!r})") as caught:
                await store.list_sessions(limit=limit)  # type: ignore[arg-type]
            _require(repr(limit) in str(caught.value), f"the error names {limit!r}: {caught.value}")
        for cursor in [*forged, 42]:
            with _raises(InvalidCursor, f"list_sessions(cursor={cursor!r})") as caught:
                await store.list_sessions(cursor=cursor)  # type: ignore[arg-type]
            _require(isinstance(caught.value, ValueError), "InvalidCursor is a ValueError")
            _require(
                repr(cursor) in str(caught.value), f"the error names {cursor!r}: {caught.value}"
            )


async def check_invalid_session_ids(factory: StoreFactory, *, reopen: Reopen | None = None) -> None:
    """Ids that break ``[A-Za-z0-9_-]{1,64}`` (``"../x"``, ``""``, 65 chars, ``"a b"``,
    ``"x/y"``, a newline, non-ASCII, non-``str``) raise :class:`~runtime.InvalidSessionId`
    (a ``ValueError``) naming the value, from ``load``, ``load_metadata``, ``save``,
    ``delete``, ``exists``, ``load_events`` and ``new_session``; nothing is stored. The
    check comes before any I/O: a closed store raises it too.

    Rule: DESIGN.md, "Persistence contract" (refused before touching the disk).
    """
    bad_ids: list[object] = ["../x", "", "a" * 65, "a b", "x/y", "abc\n", "é", ".", None, 5]
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        closed = await stores.fresh()
        await closed.aclose()
        for bad in bad_ids:
            victim = Session()
            victim.session_id = cast(str, bad)
            bad_id = cast(str, bad)
            for target, label in ((store, "open"), (closed, "closed")):
                calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
                    ("load", partial(target.load, bad_id)),
                    ("load_metadata", partial(target.load_metadata, bad_id)),
                    ("delete", partial(target.delete, bad_id)),
                    ("exists", partial(target.exists, bad_id)),
                    ("load_events", partial(target.load_events, bad_id, "s1")),
                    ("save", partial(target.save, victim)),
                ]
                for name, call in calls:
                    with _raises(InvalidSessionId, f"{name}({bad!r}) on an {label} store") as c:
                        await call()
                    _require(isinstance(c.value, ValueError), "InvalidSessionId is a ValueError")
                    _require(repr(bad) in str(c.value), f"the error names {bad!r}: {c.value}")
            if bad is not None:  # None asks new_session() for a fresh id
                with _raises(InvalidSessionId, f"new_session(session_id={bad!r})"):
                    store.new_session(session_id=bad)
        _equal(await store.exists("a" * 64), False, "exists() of a valid 64-char id")
        _equal(await _listed_ids(store), [], "list_sessions() after refused saves")
        _equal(
            dict(await store.recover()),
            {"scanned": 0, "restored": 0, "orphaned_backups": 0, "quarantined": 0},
            "recover() after refused saves (nothing may be stored)",
        )


async def check_delete_is_never_recovered(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """``delete()`` removes a session — also one with a backup from a shrinking save —
    and ``recover()`` never brings it back, also after a restart; other sessions are
    untouched; deleting again raises :class:`~runtime.SessionNotFound`.

    Rule: DESIGN.md, "Persistence contract" (recover never resurrects a deleted session:
    tombstones).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        doomed = _session(session_id="doomed", messages=_messages(4))
        await store.save(doomed, touch_updated_at=False)
        doomed.messages = doomed.messages[:1]
        await store.save(doomed, touch_updated_at=False)  # leaves a backup
        kept = _session(session_id="kept", messages=_messages(2))
        await store.save(kept, touch_updated_at=False)
        await store.delete("doomed")
        for label in ("after delete", "after restart and recover()"):
            _equal(await store.exists("doomed"), False, f"exists() {label}")
            with _raises(SessionNotFound, f"load() {label}"):
                await store.load("doomed")
            with _raises(SessionNotFound, f"load_metadata() {label}"):
                await store.load_metadata("doomed")
            _equal(await _listed_ids(store), ["kept"], f"listed sessions {label}")
            _equal(await _stored(store, "kept"), kept.to_dict(), f"the other session {label}")
            store = await stores.restart(store)
            _equal(
                dict(await store.recover()),
                {"scanned": 1, "restored": 0, "orphaned_backups": 0, "quarantined": 0},
                f"recover() {label}",
            )
        with _raises(SessionNotFound, "delete() of a deleted session"):
            await store.delete("doomed")


async def check_recover_clean_store_is_noop(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """``recover()`` on a clean store changes nothing: ``{scanned: N, restored: 0,
    orphaned_backups: 0}`` with N the stored sessions (hidden ones count), stored states
    and the listing unchanged, and the same report when run again.

    Rule: DESIGN.md, "Persistence contract" (recover reports ``{scanned, restored,
    orphaned_backups}``) (a no-op on a clean store).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        _equal(
            dict(await store.recover()),
            {"scanned": 0, "restored": 0, "orphaned_backups": 0, "quarantined": 0},
            "recover() of an empty store",
        )
        sessions = [
            _session(session_id="one", messages=_messages(1)),
            _session(session_id="two", messages=_messages(2), updated_at=1_700_000_001.0),
            _session(session_id="empty", title="Untitled"),
        ]
        for s in sessions:
            await store.save(s, touch_updated_at=False)
        sessions[1].messages.append({"role": "user", "content": "grown"})
        await store.save(sessions[1], touch_updated_at=False, skip_index=True)
        store = await stores.restart(store)
        listed = await _listed_ids(store)
        for attempt in ("first", "second"):
            _equal(
                dict(await store.recover()),
                {"scanned": 3, "restored": 0, "orphaned_backups": 0, "quarantined": 0},
                f"{attempt} recover() of a clean store",
            )
            for s in sessions:
                _equal(await _stored(store, s.session_id), s.to_dict(), f"state after {attempt}")
            _equal(await _listed_ids(store), listed, f"listing after {attempt} recover()")
        _equal(listed, ["two", "one"], "listing of the clean store")


async def check_events_round_trip(factory: StoreFactory, *, reopen: Reopen | None = None) -> None:
    """Events saved with ``save(events=...)`` come back from ``load_events()`` equal and
    in ``seq`` order; ``after_seq`` filters; saving overlapping batches never duplicates;
    they stay readable after the stream's final save and after a restart; other streams
    and sessions see none of them.

    Rule: ``Store.save`` / ``Store.load_events`` docstrings (a stream can be replayed after
    a restart); DESIGN.md, "Event log and subscribers" (resume from the durable log).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        session = _session(session_id="ev", messages=_messages(1), active_stream_id="st1")
        events = [_event(seq, "st1", "ev") for seq in range(1, 9)]
        await store.save(session, events=events[:3])
        _equal(await store.load_events("ev", "st1"), events[:3], "load_events() after one save")
        await store.save(session, skip_index=True, events=events[:5])
        await store.save(session, skip_index=True, events=events[3:6])
        await store.save(session, skip_index=True, events=events[5:6])
        await store.save(session, skip_index=True)
        other = _session(session_id="other", messages=_messages(1), active_stream_id="st9")
        await store.save(other, events=[_event(1, "st9", "other")])
        session.active_stream_id = None
        await store.save(session)
        store = await stores.restart(store)
        _equal(await store.load_events("ev", "st1"), events[:6], "load_events() (no duplicates)")
        _equal(await store.load_events("ev", "st1", 4), events[4:6], "load_events(after_seq=4)")
        _equal(await store.load_events("ev", "st1", 6), [], "load_events(after_seq=last)")
        _equal(await store.load_events("ev", "nope"), [], "load_events() of an unknown stream")
        _equal(await store.load_events("ev", "st9"), [], "another session's stream")
        _equal(len(await store.load_events("other", "st9")), 1, "the other session's events")


async def check_final_save_persists_events(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """The last events of a stream arrive with the save that clears the pending fields
    (``active_stream_id=None``): they are stored under each event's own ``stream_id``,
    so ``load_events()`` returns the whole stream, terminal events included, also after
    a restart.

    Rule: DESIGN.md, "Life of a turn" step 5 (the final save clears the pending fields;
    the terminal event and ``stream.end`` follow it) with ``Store.load_events`` (a
    stream can be replayed after a restart); ``runtime._runner`` saves them this way.
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        session = _session(session_id="fin", messages=_messages(1), active_stream_id="st1")
        events = [_event(seq, "st1", "fin") for seq in range(1, 6)]
        await store.save(session, events=events[:2])
        session.messages.append({"role": "assistant", "content": "done"})
        session.active_stream_id = session.pending_user_message = None
        await store.save(session, events=events[2:])
        store = await stores.restart(store)
        _equal(
            await store.load_events("fin", "st1"),
            events,
            "load_events() after a final save that cleared active_stream_id",
        )


def _text_event(seq: int, type: str = "token", text: str | None = None) -> Event:
    """A ``token``-shaped event of stream ``st1`` of session ``runs``: data exactly
    ``{"text"}``, the shape a store may keep as one record per run."""
    data = {"text": f"t{seq} ✓ \n" if text is None else text}
    return Event(seq, "st1", "runs", type, data, 1_700_000_000.0 + seq / 16)


async def check_token_runs_round_trip(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """A stream of many ``token`` events (data ``{"text"}``, the shape a store may keep
    as one record per run) comes back from ``load_events()`` event for event: the same
    gapless ``seq``, ``type``, ``data`` and ``ts``, from every ``after_seq`` (a
    ``Last-Event-ID`` in the middle of a run), also when runs are broken by other
    events, by ``reasoning`` text, by a token with other data, by saves that end
    mid-run or overlap, and after a restart.

    Rule: ``Store.load_events`` (the persisted events, in order); DESIGN.md, "Event log
    and subscribers" (resume from the durable log with ``Last-Event-ID``).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        session = _session(session_id="runs", messages=_messages(1), active_stream_id="st1")
        events = [Event(1, "st1", "runs", "stream.started", {"user_message": "go"}, 1.7e9)]
        events += [_text_event(seq) for seq in range(2, 40)]
        events[9] = _text_event(10, "tool.started")  # breaks a run
        events[19] = _text_event(20, "reasoning")
        events[20] = _text_event(21, "reasoning", "")  # a run of two reasoning events
        events[24] = Event(25, "st1", "runs", "token", {"text": "x", "extra": 1}, 1.7e9 + 2)
        events[29] = _text_event(30, text="")
        events += [_text_event(seq) for seq in range(40, 44)]
        await store.save(session, events=events[:5])
        await store.save(session, skip_index=True, events=events[5:17])  # ends mid-run
        # overlapping saves: one starts where a stored run starts and goes further, one
        # starts inside a stored run
        await store.save(session, skip_index=True, events=events[10:30])
        await store.save(session, skip_index=True, events=events[27:31])
        await store.save(session, skip_index=True, events=events[31:38])
        session.active_stream_id = None
        await store.save(session, events=events[38:])
        for label in ("before a restart", "after a restart"):
            for after in range(len(events) + 1):
                _equal(
                    [e.to_dict() for e in await store.load_events("runs", "st1", after)],
                    [e.to_dict() for e in events[after:]],
                    f"load_events(after_seq={after}) of a stream of token runs {label}",
                )
            store = await stores.restart(store)


async def check_closed_store(factory: StoreFactory, *, reopen: Reopen | None = None) -> None:
    """After ``aclose()`` every operation raises :class:`~runtime.StoreClosed` (a
    ``RuntimeError``), ``open()`` included; ``aclose()`` again is a no-op.

    Rule: ``Store`` lifecycle docstrings; DESIGN.md error tree ("you closed it" is
    ``StoreClosed``, not ``StoreError``).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        session = _session(session_id="c", messages=_messages(1))
        await store.save(session)
        await store.aclose()
        await store.aclose()
        calls: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("open", store.open),
            ("save", lambda: store.save(session)),
            ("load", lambda: store.load("c")),
            ("load_metadata", lambda: store.load_metadata("c")),
            ("exists", lambda: store.exists("c")),
            ("delete", lambda: store.delete("c")),
            ("list_sessions", store.list_sessions),
            ("recover", store.recover),
            ("load_events", lambda: store.load_events("c", "s1")),
        ]
        for name, call in calls:
            with _raises(StoreClosed, f"{name}() on a closed store") as caught:
                await call()
            _require(isinstance(caught.value, RuntimeError), "StoreClosed is a RuntimeError")


#: The checks of the basic persistence contract.
BASIC_CHECKS: tuple[StoreCheck, ...] = (
    check_save_load_round_trip,
    check_touch_updated_at,
    check_skip_index_save_is_durable,
    check_loads_are_independent_copies,
    check_missing_session,
    check_load_metadata,
    check_metadata_only_save_refused,
    check_shrinking_save_keeps_backup,
    check_growing_save_keeps_no_backup,
    check_discard_backup_keeps_none,
    check_empty_overwrite_refused_while_pending,
    check_empty_overwrite_allowed_when_idle,
    check_new_session_in_memory_only,
    check_list_hides_empty_untitled,
    check_list_sorted_newest_first,
    check_list_pagination,
    check_list_active,
    check_list_bad_limit_and_cursor,
    check_invalid_session_ids,
    check_delete_is_never_recovered,
    check_recover_clean_store_is_noop,
    check_events_round_trip,
    check_token_runs_round_trip,
    check_final_save_persists_events,
    check_closed_store,
)
