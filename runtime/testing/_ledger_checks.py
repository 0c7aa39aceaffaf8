"""Store conformance checks for the tool ledger (see :mod:`runtime.testing`).

Each check applies to every store: on a store whose ``supports_tool_ledger`` is false
it checks that the ledger methods refuse with :class:`NotImplementedError` (a runtime
then knows it cannot promise at-most-once tool calls) and stops there.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson

from .._exceptions import InvalidSessionId, LeaseLost, SessionNotFound, ToolCallNotFound
from ..stores.abc import Lease, Store, ToolCallRecord
from ._store_checks import (
    Reopen,
    StoreFactory,
    _equal,
    _messages,
    _raises,
    _require,
    _session,
    _Stores,
    _stores,
)

_ARGS: dict[str, Any] = {"pattern": "TaskGroup", "paths": ["src", "ü 🚀"], "limit": 5}
#: a model's JSON text, kept verbatim: spacing, key order, even when it does not parse
_RAW_ARGS = '{"b": 1,  "a": [true, null]}'
_BROKEN_ARGS = '{"query": "unterminated'
_RESULT: dict[str, Any] = {"hits": 12, "files": ["a.py", "b.py"], "score": 0.5, "none": None}


def _lease(owner: str) -> Lease:
    return Lease(owner, uuid.uuid4().hex, 60.0)


async def _ledger_store(store: Store) -> bool:
    """True if ``store`` keeps a ledger; else require the ledger methods to refuse
    with :class:`NotImplementedError` naming the flag."""
    if store.supports_tool_ledger:
        return True
    await store.save(_session(session_id="no-ledger", messages=_messages(1)))
    calls = (
        lambda: store.record_tool_call("no-ledger", "s1", "c1", "grep", {}),
        lambda: store.record_tool_result("no-ledger", "s1", "c1", result=1),
        lambda: store.tool_calls("no-ledger", "s1"),
    )
    for call in calls:
        with _raises(NotImplementedError, "a ledger method of a store without one") as caught:
            await call()
        _require(
            "supports_tool_ledger" in str(caught.value),
            f"the NotImplementedError must name supports_tool_ledger: {caught.value}",
        )
    return False


async def _saved(store: Store, session_id: str = "ledgered") -> None:
    """Save a session for the ledger records to belong to."""
    await store.save(_session(session_id=session_id, messages=_messages(2)))


@asynccontextmanager
async def _ledger_stores(
    factory: StoreFactory, reopen: Reopen | None, *sessions: str
) -> AsyncIterator[tuple[_Stores, Store] | None]:
    """The check's stores and a fresh store holding ``sessions``, or ``None`` if the
    store has no ledger (after requiring its ledger methods to refuse)."""
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        if not await _ledger_store(store):
            yield None
            return
        for session_id in sessions:
            await _saved(store, session_id)
        yield stores, store


def _fields(record: ToolCallRecord) -> dict[str, Any]:
    """A record's fields without its timestamps (checked separately)."""
    d = record.to_dict()
    del d["started_at"], d["finished_at"]
    return d


async def check_tool_ledger_round_trip(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """``record_tool_call()`` returns the intent (state ``started``, arguments as given:
    a dict, or a string verbatim even if it is not valid JSON; ``attempt``;
    ``started_at`` now); ``record_tool_result()`` returns the record ``completed`` with
    the result as JSON (a tuple comes back a list) or ``failed`` with the error, and
    ``finished_at`` at or after ``started_at``. ``tool_calls()`` lists a stream's records
    in the order the calls started (not the order they finished, not by id), each
    stream apart, the same after a restart. Returned records share nothing with the
    store.

    Rule: ``Store.record_tool_call`` / ``record_tool_result`` / ``tool_calls``
    docstrings: intent and result are durable before the tool runs and when it ends.
    """
    async with _ledger_stores(factory, reopen, "ledgered") as opened:
        if opened is None:
            return
        stores, store = opened
        started = await store.record_tool_call("ledgered", "s1", "z-last-id", "grep", _ARGS)
        _equal(
            _fields(started),
            {
                "session_id": "ledgered",
                "stream_id": "s1",
                "call_id": "z-last-id",
                "name": "grep",
                "arguments": _ARGS,
                "state": "started",
                "result": None,
                "error": None,
                "attempt": 0,
            },
            "record_tool_call() result",
        )
        _require(
            isinstance(started.started_at, float) and started.started_at > 1_700_000_000,
            f"started_at must be epoch seconds: {started.started_at!r}",
        )
        _equal(started.finished_at, None, "finished_at of a started call")
        raw = await store.record_tool_call("ledgered", "s1", "a-first-id", "fetch", _RAW_ARGS)
        broken = await store.record_tool_call(
            "ledgered", "s1", "m-middle", "search", _BROKEN_ARGS, attempt=2
        )
        other = await store.record_tool_call("ledgered", "s2", "z-last-id", "grep", {})
        _equal((raw.arguments, broken.arguments), (_RAW_ARGS, _BROKEN_ARGS), "string arguments")
        _equal(broken.attempt, 2, "attempt of a resumed call")
        failed = await store.record_tool_result(
            "ledgered", "s1", "a-first-id", error="timeout after 30 s"
        )
        done = await store.record_tool_result(
            "ledgered", "s1", "z-last-id", result={**_RESULT, "pair": (1, 2)}
        )
        _equal(
            (done.state, done.result, done.error),
            ("completed", {**_RESULT, "pair": [1, 2]}, None),
            "record_tool_result() of a completed call",
        )
        _equal(
            (failed.state, failed.result, failed.error),
            ("failed", None, "timeout after 30 s"),
            "record_tool_result() of a failed call",
        )
        for record in (done, failed):
            _require(
                record.finished_at is not None and record.finished_at >= record.started_at,
                f"finished_at must be set, not before started_at: {record!r}",
            )
        _equal(_fields(done) | {"state": "started", "result": None}, _fields(started), "ids kept")
        expected = orjson.loads(orjson.dumps([done.to_dict(), failed.to_dict(), broken.to_dict()]))
        assert isinstance(done.result, dict)
        done.result["hits"] = -1  # the store keeps its own copy
        for label in ("", " after a restart"):
            listed = await store.tool_calls("ledgered", "s1")
            _equal([r.to_dict() for r in listed], expected, f"tool_calls(){label}")
            _equal(await store.tool_calls("ledgered", "s2"), [other], f"another stream's{label}")
            _equal(await store.tool_calls("ledgered", "s3"), [], f"a stream with no calls{label}")
            store = await stores.restart(store)


async def check_tool_ledger_first_record_wins(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """A second ``record_tool_call()`` of a recorded call (other name, arguments,
    attempt) returns the stored record unchanged, before and after its result; a
    second ``record_tool_result()`` (another result, or an error) returns the first
    result unchanged. Eight intents of one call racing: all get the same record and
    one is stored. Also after a restart.

    Rule: ``Store.record_tool_call`` docstring: an existing record comes back unchanged,
    so a resumed turn learns that the call already started or finished and never
    runs it twice; the first result wins.
    """
    async with _ledger_stores(factory, reopen, "ledgered") as opened:
        if opened is None:
            return
        stores, store = opened
        first = await store.record_tool_call("ledgered", "s1", "c1", "grep", _ARGS)
        again = await store.record_tool_call("ledgered", "s1", "c1", "rm", "{}", attempt=1)
        _equal(again, first, "a second intent of a started call")
        done = await store.record_tool_result("ledgered", "s1", "c1", result=_RESULT)
        _equal(
            await store.record_tool_call("ledgered", "s1", "c1", "rm", {"x": 1}, attempt=3),
            done,
            "an intent of a completed call",
        )
        for kwargs in ({"result": {"hits": 0}}, {"error": "late failure"}, {}):
            _equal(
                await store.record_tool_result("ledgered", "s1", "c1", **kwargs),
                done,
                f"a second result {kwargs}",
            )
        await store.record_tool_call("ledgered", "s1", "c2", "fetch", "{}")
        failed = await store.record_tool_result("ledgered", "s1", "c2", error="boom")
        _equal(
            await store.record_tool_result("ledgered", "s1", "c2", result="late success"),
            failed,
            "a result after an error",
        )
        got: list[ToolCallRecord] = []

        async def intent(i: int) -> None:
            got.append(
                await store.record_tool_call("ledgered", "s1", "raced", f"tool{i}", {"i": i})
            )

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(intent, i)
        _equal(len({r.name for r in got}), 1, f"racing intents got different records: {got}")
        store = await stores.restart(store)
        listed = await store.tool_calls("ledgered", "s1")
        _equal([r.call_id for r in listed], ["c1", "c2", "raced"], "calls after the races")
        _equal(listed[:2], [done, failed], "first results after a restart")
        _equal(listed[2], got[0], "the raced call after a restart")


async def check_tool_ledger_result_needs_intent(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """``record_tool_result()`` of a call with no recorded intent raises
    :class:`~runtime.ToolCallNotFound` (a ``LookupError``) and writes nothing: no
    record appears, also after a restart. Either call for a session that is not stored
    (never saved, or new in memory only) raises :class:`~runtime.SessionNotFound` and
    writes nothing.

    Rule: ``Store.record_tool_result`` docstring (a result belongs to a recorded
    intent) and DESIGN.md, "Persistence contract" (no file or row before real state).
    """
    async with _ledger_stores(factory, reopen, "ledgered") as opened:
        if opened is None:
            return
        stores, store = opened
        await store.record_tool_call("ledgered", "s1", "known", "grep", {})
        for stream, call in (("s1", "unknown"), ("s2", "known")):
            with _raises(ToolCallNotFound, f"a result for {stream}/{call} without intent"):
                await store.record_tool_result("ledgered", stream, call, result=1)
        draft = store.new_session(title="draft only")
        for sid in ("missing", draft.session_id):
            with _raises(SessionNotFound, f"record_tool_call() for unstored session {sid!r}"):
                await store.record_tool_call(sid, "s1", "c1", "grep", {})
            with _raises(SessionNotFound, f"record_tool_result() for unstored session {sid!r}"):
                await store.record_tool_result(sid, "s1", "c1", result=1)
        store = await stores.restart(store)
        _equal(
            [r.call_id for r in await store.tool_calls("ledgered", "s1")],
            ["known"],
            "ledger after refused results",
        )
        _equal(await store.tool_calls("ledgered", "s2"), [], "stream of a refused result")
        _equal(await store.tool_calls("missing", "s1"), [], "ledger of an unstored session")
        _equal(await store.exists("missing"), False, "a refused intent must not create a session")


async def check_tool_ledger_refuses_bad_input(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """Bad input raises before anything is written, with a message naming the value:
    an invalid session id (:class:`~runtime.InvalidSessionId`), a bad stream id, an
    empty call id or tool name, a negative attempt, or a result together with an error
    (``ValueError``); arguments that are neither a dict nor a string, or not JSON-ready,
    a result that is not JSON-ready, an error that is not a string (``TypeError``).
    A refused result leaves the call ``started``.

    Rule: CONVENTIONS (bad input: a clear error naming the value and the rule, nothing
    written); ``Store.record_tool_call`` docstring.
    """
    async with _ledger_stores(factory, reopen, "ledgered") as opened:
        if opened is None:
            return
        stores, store = opened
        started = await store.record_tool_call("ledgered", "s1", "c1", "grep", _ARGS)
        bad_intents: list[tuple[type[Exception], str, tuple[Any, ...], dict[str, Any]]] = [
            (InvalidSessionId, "'bad/id'", ("bad/id", "s1", "c9", "grep", {}), {}),
            (ValueError, "''", ("ledgered", "", "c9", "grep", {}), {}),
            (ValueError, "'s/1'", ("ledgered", "s/1", "c9", "grep", {}), {}),
            (ValueError, "''", ("ledgered", "s1", "", "grep", {}), {}),
            (ValueError, "''", ("ledgered", "s1", "c9", "", {}), {}),
            (ValueError, "None", ("ledgered", "s1", None, "grep", {}), {}),
            (ValueError, "-1", ("ledgered", "s1", "c9", "grep", {}), {"attempt": -1}),
            (TypeError, "[1, 2]", ("ledgered", "s1", "c9", "grep", [1, 2]), {}),
            (TypeError, "'when'", ("ledgered", "s1", "c9", "grep", {"when": object()}), {}),
        ]
        for error, named, args, kwargs in bad_intents:
            with _raises(error, f"record_tool_call{args} {kwargs}") as caught:
                await store.record_tool_call(*args, **kwargs)
            _require(named in str(caught.value), f"the error must name {named}: {caught.value}")
        bad_results: list[tuple[type[Exception], str, dict[str, Any]]] = [
            (TypeError, "object at", {"result": {"when": object()}}),
            (TypeError, "{2}", {"result": {"x": {2}}}),
            (TypeError, "42", {"error": 42}),
            (ValueError, "'boom'", {"result": 1, "error": "boom"}),
            (ValueError, "''", {"call_id": "", "result": 1}),
        ]
        for error, named, kwargs in bad_results:
            kwargs.setdefault("call_id", "c1")
            with _raises(error, f"record_tool_result({kwargs})") as caught:
                await store.record_tool_result("ledgered", "s1", **kwargs)
            _require(named in str(caught.value), f"the error must name {named}: {caught.value}")
        store = await stores.restart(store)
        _equal(await store.tool_calls("ledgered", "s1"), [started], "ledger after bad input")


async def check_tool_ledger_is_fenced(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """With ``lease=``, ledger writes are fenced like checkpoints: the holder of the
    session's lease records intents and results; another token (a process whose lease
    was taken) gets :class:`~runtime.LeaseLost` for an intent, a result, and even an
    intent already recorded, and nothing is written; after the lease is released the
    old token is fenced off too. Without ``lease=`` a write is not fenced.

    Rule: DESIGN.md, "Scale-out" (every write of a running turn carries its lease
    token; a zombie overwrites nothing) and ``Store.record_tool_call`` docstring.
    """
    async with _ledger_stores(factory, reopen) as opened:
        if opened is None:
            return
        stores, store = opened
        session = _session(session_id="fenced", messages=_messages(2), active_stream_id="s1")
        a, b = _lease("node-a"), _lease("node-b")
        await store.save(session, touch_updated_at=False, lease=a, lease_mode="claim")
        mine = await store.record_tool_call("fenced", "s1", "c1", "grep", {}, lease=a)
        with _raises(LeaseLost, "an intent with another process's lease"):
            await store.record_tool_call("fenced", "s1", "c2", "x", {}, lease=b)
        with _raises(LeaseLost, "an intent of a recorded call with another process's lease"):
            await store.record_tool_call("fenced", "s1", "c1", "x", "", lease=b)
        with _raises(LeaseLost, "a result with another process's lease"):
            await store.record_tool_result("fenced", "s1", "c1", result=2, lease=b)
        _equal(await store.tool_calls("fenced", "s1"), [mine], "ledger after fenced writes")
        done = await store.record_tool_result("fenced", "s1", "c1", result=1, lease=a)
        session.active_stream_id = None
        await store.save(session, touch_updated_at=False, lease=a, lease_mode="release")
        with _raises(LeaseLost, "an intent with a released lease"):
            await store.record_tool_call("fenced", "s1", "c3", "grep", {}, lease=a)
        unfenced = await store.record_tool_call("fenced", "s1", "c4", "grep", {})
        store = await stores.restart(store)
        _equal(await store.tool_calls("fenced", "s1"), [done, unfenced], "ledger after restart")


async def check_tool_ledger_deleted_with_session(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """``delete()`` removes the session's ledger (every stream); a new session with the
    same id starts with an empty one; other sessions keep theirs; ``recover()`` treats
    ledgers as part of their session (scans one session per session, quarantines
    nothing). Also after a restart.

    Rule: ``Store.delete`` docstring (the session is gone, and ``recover()`` never brings
    it back) and DESIGN.md, "Persistence contract".
    """
    async with _ledger_stores(factory, reopen) as opened:
        if opened is None:
            return
        stores, store = opened
        await _saved(store, "doomed")
        await _saved(store, "kept")
        for sid in ("doomed", "kept"):
            for stream in ("s1", "s2"):
                await store.record_tool_call(sid, stream, "c1", "grep", {"sid": sid})
                await store.record_tool_result(sid, stream, "c1", result=sid)
        _equal(
            dict(await store.recover()),
            {"scanned": 2, "restored": 0, "orphaned_backups": 0, "quarantined": 0},
            "recover() with two ledgers",
        )
        kept = await store.tool_calls("kept", "s2")
        await store.delete("doomed")
        for label in ("after delete()", "after a restart"):
            for stream in ("s1", "s2"):
                _equal(await store.tool_calls("doomed", stream), [], f"ledger {label}")
            _equal(await store.tool_calls("kept", "s2"), kept, f"another session's {label}")
            store = await stores.restart(store)
        _equal(
            dict(await store.recover()),
            {"scanned": 1, "restored": 0, "orphaned_backups": 0, "quarantined": 0},
            "recover() after the delete",
        )
        await _saved(store, "doomed")
        _equal(await store.tool_calls("doomed", "s1"), [], "ledger of a new session, same id")
        with _raises(ToolCallNotFound, "a result for a call of the deleted session"):
            await store.record_tool_result("doomed", "s1", "c1", result=1)


async def check_tool_ledger_cancelled_write_is_whole(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """A ``record_tool_call()`` or ``record_tool_result()`` cancelled at any moment
    leaves the record as it was or as the call would have made it, never part of it;
    the ledger keeps working afterwards, also after a restart.

    Rule: ``Store.record_tool_call`` docstring (the intent is durable, or absent) with
    anyio's cancellation semantics, as for ``Store.save``.
    """
    async with _ledger_stores(factory, reopen, "ledgered") as opened:
        if opened is None:
            return
        stores, store = opened
        delays = [0.0, 0.0001, 0.0003, 0.001, 0.002, 0.004, 0.008, 0.02]
        seen: dict[str, dict[str, Any] | None] = {}
        for i, delay in enumerate(delays):
            call = f"c{i}"
            args = {"i": i, "text": "x" * 2000}
            with anyio.move_on_after(delay):
                await store.record_tool_call("ledgered", "s1", call, f"tool{i}", args, attempt=1)
            found = {r.call_id: r for r in await store.tool_calls("ledgered", "s1")}
            record = found.get(call)
            if record is not None:
                _equal(
                    (record.name, record.arguments, record.state, record.attempt),
                    (f"tool{i}", args, "started", 1),
                    f"an intent cancelled after {delay}s",
                )
                with anyio.move_on_after(delay):
                    await store.record_tool_result("ledgered", "s1", call, result={"n": i})
                record = {r.call_id: r for r in await store.tool_calls("ledgered", "s1")}[call]
                _require(
                    (record.state, record.result) in (("started", None), ("completed", {"n": i})),
                    f"a result cancelled after {delay}s left {record!r}",
                )
            seen[call] = None if record is None else record.to_dict()
        await store.record_tool_call("ledgered", "s1", "after", "grep", {})
        store = await stores.restart(store)
        listed = {r.call_id: r.to_dict() for r in await store.tool_calls("ledgered", "s1")}
        _equal(
            listed,
            {c: r for c, r in seen.items() if r is not None} | {"after": listed.get("after")},
            "ledger after cancelled writes and a restart",
        )
        _require(listed.get("after") is not None, "a write after the cancellations was lost")


#: The tool ledger checks, part of :data:`STORE_CHECKS`.
LEDGER_CHECKS = (
    check_tool_ledger_round_trip,
    check_tool_ledger_first_record_wins,
    check_tool_ledger_result_needs_intent,
    check_tool_ledger_refuses_bad_input,
    check_tool_ledger_is_fenced,
    check_tool_ledger_deleted_with_session,
    check_tool_ledger_cancelled_write_is_whole,
)
