"""Store conformance checks for explicit checkpoint deltas (:class:`~runtime.SaveDelta`;
see :mod:`runtime.testing`)."""

from __future__ import annotations

from typing import Any

import orjson

from .._exceptions import WriteConflict
from .._session import Session
from ..stores.abc import SaveDelta, Store
from ._store_checks import (
    Reopen,
    StoreCheck,
    StoreFactory,
    _equal,
    _messages,
    _raises,
    _session,
    _stored,
    _stores,
)


def _comparable(state: dict[str, Any]) -> dict[str, Any]:
    """A stored state without its id, through JSON (what any backend can round-trip)."""
    out: dict[str, Any] = orjson.loads(orjson.dumps(state))
    del out["session_id"]
    return out


async def _both(store: Store, pair: list[Session], delta: SaveDelta, **kw: Any) -> None:
    """Save ``pair[0]`` with ``delta`` and ``pair[1]`` (the same content) without one."""
    await store.save(pair[0], touch_updated_at=False, delta=delta, **kw)
    await store.save(pair[1], touch_updated_at=False, **kw)


async def check_delta_save_matches_full_save(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """Two sessions live through the same turn: one saved with the deltas a runner
    passes (messages appended, no field named but a new ``updated_at``; the last
    message growing in place, ``keep = base - 1``; changed fields named; the final full
    save naming the pending fields), the other with plain saves. Both load the same
    (``load()`` and ``load_metadata()``) after every step and after a restart.

    Rule: ``Store.save`` docstring (``delta``) and :class:`~runtime.SaveDelta`: a delta
    says what changed; the stored state is the one a full save gives.
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        pair = [
            _session(messages=_messages(2), active_stream_id="s1", pending_user_message="q")
            for _ in range(2)
        ]
        for s in pair:
            await store.save(s, touch_updated_at=False)

        def step(change: Any) -> None:
            for s in pair:
                change(s)

        async def compare(what: str) -> None:
            a = _comparable(await _stored(store, pair[0].session_id))
            b = _comparable(await _stored(store, pair[1].session_id))
            _equal(a, b, f"delta save vs full save, {what}")
            _equal(a, _comparable(pair[1].to_dict()), f"stored state {what}")
            meta = await store.load_metadata(pair[0].session_id)
            _equal(meta.updated_at, pair[1].updated_at, f"load_metadata().updated_at {what}")

        def append(s: Session) -> None:
            s.messages.append({"role": "assistant", "content": "Sear"})
            s.updated_at += 5.0  # always written, though the delta names no field

        step(append)
        await _both(store, pair, SaveDelta.appended(2), skip_index=True)
        await compare("after an append")

        def grow(s: Session) -> None:
            s.messages[-1]["content"] = "Searching the library…"
            s.messages.append({"role": "tool", "tool_call_id": "c1", "content": "42"})

        step(grow)
        await _both(store, pair, SaveDelta(3, 2), skip_index=True)
        await compare("after the last message changed in place")

        def rename(s: Session) -> None:
            s.title = "renamed mid-turn"
            s.metadata = {"usage": {"prompt_tokens": 7}}

        step(rename)
        await _both(store, pair, SaveDelta(4, 4, frozenset({"title", "metadata"})), skip_index=True)
        await compare("after fields changed")

        def finish(s: Session) -> None:
            s.messages.append({"role": "assistant", "content": "done"})
            s.active_stream_id = s.pending_user_message = None

        step(finish)
        pending = frozenset({"active_stream_id", "pending_user_message", "pending_started_at"})
        await _both(store, pair, SaveDelta(4, 4, pending))
        await compare("after the final full save")
        store = await stores.restart(store)
        await compare("after restart")


async def check_wrong_delta_refused(factory: StoreFactory, *, reopen: Reopen | None = None) -> None:
    """A delta computed against another stored state (its ``base`` is not the stored
    message count: too low, too high, or any base but 0 for a session never saved) is
    refused with :class:`~runtime.WriteConflict` naming the stored count
    (``stored_count``) and writes nothing, as a checkpoint and as a full save; a delta
    whose ``keep`` exceeds the session's messages is a ``ValueError`` before any I/O.

    Rule: ``Store.save`` docstring (``delta``): a wrong delta is refused, never
    applied to a state it does not describe.
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        session = _session(messages=_messages(3))
        await store.save(session, touch_updated_at=False)
        before = await _stored(store, session.session_id)
        session.messages.append({"role": "assistant", "content": "new"})
        session.title = "changed"
        for base in (2, 4):
            for skip_index in (True, False):
                what = f"save(delta base={base}, skip_index={skip_index}) of 3 stored"
                with _raises(WriteConflict, what) as caught:
                    await store.save(
                        session, skip_index=skip_index, delta=SaveDelta.appended(base, ["title"])
                    )
                _equal(getattr(caught.value, "stored_count", None), 3, f"{what}: stored_count")
                _equal(await _stored(store, session.session_id), before, f"stored after {what}")
        with _raises(ValueError, "save(delta keep=5) of a session holding 4 messages"):
            await store.save(session, delta=SaveDelta(6, 5))
        fresh = _session(messages=_messages(1))
        with _raises(WriteConflict, "save(delta base=1) of a session never saved") as caught:
            await store.save(fresh, delta=SaveDelta.appended(1))
        _equal(getattr(caught.value, "stored_count", None), 0, "never saved: stored_count")
        _equal(await store.exists(fresh.session_id), False, "exists() after the refused save")
        store = await stores.restart(store)
        _equal(await _stored(store, session.session_id), before, "stored after restart")


#: The delta checks, part of :data:`STORE_CHECKS`.
DELTA_CHECKS: tuple[StoreCheck, ...] = (
    check_delta_save_matches_full_save,
    check_wrong_delta_refused,
)
