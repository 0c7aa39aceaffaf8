"""Store conformance checks for leases, conditional writes, cancelled saves and new
sessions shared between processes (see :mod:`runtime.testing`)."""

from __future__ import annotations

import uuid

import anyio

from .._exceptions import LeaseLost, SessionBusy, WriteConflict
from ..stores.abc import Lease, LeaseMode
from ._store_checks import (
    Reopen,
    StoreFactory,
    _equal,
    _listed_ids,
    _messages,
    _raises,
    _require,
    _session,
    _stored,
    _stores,
)

#: Seconds a short test lease lasts; the checks sleep past it to see it expire.
_SHORT_TTL = 0.3
_TAKE: tuple[LeaseMode, ...] = ("claim", "repair")
_HOLD: tuple[LeaseMode, ...] = ("renew", "release")


def _lease(owner: str, ttl: float = 60.0) -> Lease:
    return Lease(owner, uuid.uuid4().hex, ttl)


async def check_lease_claim_renew_release(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """A ``claim`` save takes the session's lease (``lease_state()`` names the owner, not
    expired); while it is held another claim raises :class:`~runtime.SessionBusy`, a
    renewal or release with another token raises :class:`~runtime.LeaseLost`, a delete
    raises ``SessionBusy``, and none of them writes anything. ``renew`` saves and
    ``renew_lease()`` keep it; a ``release`` save frees it (``lease_state() is None``),
    after which the old token is fenced off and a new claim succeeds.

    Rule: ``Store.save`` (lease modes) and ``Store.lease_state`` docstrings: one writer
    per session, every write of a running turn carries its token (fencing).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        session = _session(session_id="leased", messages=_messages(2), active_stream_id="s1")
        a, b = _lease("node-a"), _lease("node-b")
        await store.save(session, touch_updated_at=False, lease=a, lease_mode="claim")
        state = await store.lease_state("leased")
        _require(state is not None, "lease_state() after a claim must not be None")
        assert state is not None
        _equal(state.owner, "node-a", "lease_state().owner after a claim")
        _require(state.expires_in > 0, f"a fresh lease must not be expired: {state}")
        before = await _stored(store, "leased")
        intruder = _session(session_id="leased", messages=_messages(5, "intruder"))
        for mode in _TAKE:
            with _raises(SessionBusy, f"a {mode} save while another lease is held"):
                await store.save(intruder, lease=b, lease_mode=mode)
        for mode in _HOLD:
            with _raises(LeaseLost, f"a {mode} save with a token that is not stored"):
                await store.save(intruder, lease=b, lease_mode=mode)
        with _raises(LeaseLost, "renew_lease() with a token that is not stored"):
            await store.renew_lease("leased", b)
        with _raises(SessionBusy, "delete() while a lease is held"):
            await store.delete("leased")
        _equal(await _stored(store, "leased"), before, "stored state after fenced writes")
        session.messages.append({"role": "assistant", "content": "checkpointed"})
        await store.save(session, skip_index=True, touch_updated_at=False, lease=a)
        await store.renew_lease("leased", a)
        _equal(await _stored(store, "leased"), session.to_dict(), "state after a renew save")
        session.active_stream_id = None
        await store.save(session, touch_updated_at=False, lease=a, lease_mode="release")
        _equal(await store.lease_state("leased"), None, "lease_state() after a release")
        with _raises(LeaseLost, "a renew save with a released token"):
            await store.save(intruder, lease=a)
        with _raises(LeaseLost, "renew_lease() with a released token"):
            await store.renew_lease("leased", a)
        _equal(await _stored(store, "leased"), session.to_dict(), "state after the release")
        await store.save(session, touch_updated_at=False, lease=b, lease_mode="claim")
        state = await store.lease_state("leased")
        _equal(None if state is None else state.owner, "node-b", "owner after a new claim")


async def check_expired_lease_can_be_taken_over(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """Once a lease has expired (``lease_state().expires_in <= 0``) another writer may
    claim it, or repair the session (take it and free it in one write); from then on
    every write with the old token raises :class:`~runtime.LeaseLost` and changes
    nothing. A late writer whose lease expired but was not taken may still renew it.

    Rule: DESIGN.md, "Scale-out" (stale means the lease expired; a process whose lease
    was taken overwrites nothing).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        old = _lease("node-a", _SHORT_TTL)
        for sid in ("taken", "repaired", "late"):
            s = _session(session_id=sid, messages=_messages(2), active_stream_id="s1")
            await store.save(s, touch_updated_at=False, lease=old, lease_mode="claim")
        await anyio.sleep(_SHORT_TTL * 1.5)
        for sid in ("taken", "repaired", "late"):
            state = await store.lease_state(sid)
            _require(
                state is not None and state.expires_in <= 0,
                f"lease_state({sid!r}) after its ttl must be expired: {state}",
            )
        new = _lease("node-b")
        taken = _session(session_id="taken", messages=_messages(3, "new owner"))
        taken.active_stream_id = "s2"
        await store.save(taken, touch_updated_at=False, lease=new, lease_mode="claim")
        repaired = _session(session_id="repaired", messages=_messages(3, "repaired"))
        await store.save(repaired, touch_updated_at=False, lease=new, lease_mode="repair")
        _equal(await store.lease_state("repaired"), None, "lease_state() after a repair")
        zombie = _session(session_id="taken", messages=_messages(9, "zombie"))
        for sid, expected in (("taken", taken), ("repaired", repaired)):
            zombie.session_id = sid
            for mode in _HOLD:
                with _raises(LeaseLost, f"a {mode} save of {sid!r} by the old owner"):
                    await store.save(zombie, lease=old, lease_mode=mode)
            with _raises(LeaseLost, f"renew_lease({sid!r}) by the old owner"):
                await store.renew_lease(sid, old)
            _equal(await _stored(store, sid), expected.to_dict(), f"{sid!r} after the zombie")
        await store.renew_lease("late", old)
        state = await store.lease_state("late")
        _require(state is not None and state.expires_in > 0, f"renewed late lease: {state}")


async def check_concurrent_claims_one_wins(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """Eight writers claim the lease of one session at the same time (also of a
    session not stored yet): exactly one succeeds, the others get
    :class:`~runtime.SessionBusy`, and the stored state is the winner's.

    Rule: ``Store.save`` docstring: the check and the write are one backend operation,
    so ``start_turn`` on several processes cannot both own a session.
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        await store.save(_session(session_id="existing", messages=_messages(1)))
        for sid in ("existing", "brand-new"):
            winners: list[int] = []
            busy: list[int] = []

            async def claim(
                i: int, sid: str = sid, winners: list[int] = winners, busy: list[int] = busy
            ) -> None:
                s = _session(session_id=sid, messages=_messages(2, f"writer {i}"))
                s.active_stream_id = f"stream-{i}"
                try:
                    await store.save(s, lease=_lease(f"node-{i}"), lease_mode="claim")
                    winners.append(i)
                except SessionBusy:
                    busy.append(i)

            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(claim, i)
            _equal(len(winners), 1, f"claims of {sid!r} that succeeded")
            _equal(len(busy), 7, f"claims of {sid!r} refused with SessionBusy")
            stored = await store.load(sid)
            _equal(stored.active_stream_id, f"stream-{winners[0]}", "the winner's state")
            state = await store.lease_state(sid)
            _equal(None if state is None else state.owner, f"node-{winners[0]}", "lease owner")


async def check_concurrent_saves_never_torn(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """Twelve full saves of different states of one session run at once (growing and
    shrinking message lists, different titles): afterwards the stored state, also
    after a restart, is exactly one of them, and the listing shows it once.

    Rule: ``Store.save`` docstring (atomic: the old or the new state, never a torn one),
    for writers that race.
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        await store.save(_session(session_id="raced", messages=_messages(4)))
        states = {}
        for i in range(12):
            s = _session(session_id="raced", title=f"version {i}")
            s.messages = _messages(1 + (i * 5) % 7, f"version {i}")
            states[i] = s.to_dict()

        async def save(i: int) -> None:
            s = _session(session_id="raced", title=f"version {i}")
            s.messages = _messages(1 + (i * 5) % 7, f"version {i}")
            await store.save(s, touch_updated_at=False)

        async with anyio.create_task_group() as tg:
            for i in range(12):
                tg.start_soon(save, i)
        stored = await _stored(store, "raced")
        _require(stored in states.values(), f"after racing saves the state is torn: {stored!r}")
        _equal(await _listed_ids(store), ["raced"], "listing after racing saves")
        store = await stores.restart(store)
        _equal(await _stored(store, "raced"), stored, "raced state after a restart")


async def check_cancelled_save_is_old_or_new(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """A save cancelled at any moment (from before its first await to after its last)
    leaves either the previous state or the new one, never a mix, for full and
    checkpoint saves; the store keeps working afterwards, also after a restart.

    Rule: ``Store.save`` docstring (atomic and durable; never torn) with anyio's
    cancellation semantics: a cancelled task must not leave half a write behind.
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        session = _session(session_id="cancelled", messages=_messages(3, "v0"))
        await store.save(session, touch_updated_at=False)
        current = session.to_dict()
        delays = [0.0, 0.0001, 0.0003, 0.001, 0.002, 0.004, 0.008, 0.02]
        for round_, delay in enumerate(delays * 2):
            skip_index = round_ >= len(delays)
            new = await store.load("cancelled")
            new.title = f"round {round_}"
            if skip_index:
                new.messages[-1] = {"role": "assistant", "content": f"changed {round_}"}
                new.messages.extend(_messages(2, f"round {round_}"))
            else:
                new.messages = _messages(2 + round_ % 5, f"round {round_}")
            candidate = new.to_dict()
            with anyio.move_on_after(delay):
                await store.save(new, skip_index=skip_index, touch_updated_at=False)
            stored = await _stored(store, "cancelled")
            _require(
                stored in (current, candidate),
                f"a save cancelled after {delay}s left a torn state: {stored!r}",
            )
            current = stored
        session = await store.load("cancelled")
        session.messages.append({"role": "user", "content": "after the cancellations"})
        await store.save(session, touch_updated_at=False)
        store = await stores.restart(store)
        _equal(await _stored(store, "cancelled"), session.to_dict(), "state after restart")


async def check_new_session_sharing(factory: StoreFactory, *, reopen: Reopen | None = None) -> None:
    """``share_new_session()`` writes nothing durable: the session is not listed and
    ``recover()`` scans nothing. On a store several processes share
    (``store.shared``), a second store open on the same data at the same time loads
    it (full and metadata-only), can save it (its first real save), and then the first
    store loads the saved state, not its own draft. On any other store it is a no-op:
    after a restart the session does not exist.

    Rule: DESIGN.md, "Scale-out" (a new session is visible to every process before its
    first save and still leaves no durable row or file until it has real state).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        draft = store.new_session(title="shared draft")
        sid = draft.session_id
        await store.share_new_session(draft)
        _equal(await _listed_ids(store), [], "list_sessions() with a shared new session")
        _equal(
            dict(await store.recover()),
            {"scanned": 0, "restored": 0, "orphaned_backups": 0, "quarantined": 0},
            "recover() with a shared new session (nothing may be stored)",
        )
        if store.shared and reopen is not None:
            other = await stores.alongside(store)
            loaded = await other.load(sid)
            _equal(loaded.to_dict(), draft.to_dict(), "load() on another process")
            meta = await other.load_metadata(sid)
            _equal((meta.title, meta.metadata_only), ("shared draft", True), "load_metadata()")
            _equal(await other.exists(sid), True, "exists() on another process")
            loaded.messages.append({"role": "user", "content": "first turn elsewhere"})
            await other.save(loaded)
            _equal(await _stored(store, sid), loaded.to_dict(), "the first store after the save")
            _equal(await _listed_ids(store), [sid], "listing after the first save")
        elif stores.persistent:
            store = await stores.restart(store)
            _equal(await store.exists(sid), False, "a shared new session after a restart")


async def check_documents_compare_and_set(
    factory: StoreFactory, *, reopen: Reopen | None = None
) -> None:
    """``write_document`` creates a document only if none exists (``expected_version=None``)
    and replaces it only at the version it names, returning the new one;
    ``read_document`` returns the bytes and version; a stale version or a second
    create raises :class:`~runtime.WriteConflict` and changes nothing; bad names raise
    ``ValueError``; documents survive a restart; they are not sessions (not listed,
    not scanned by ``recover()``).

    Rule: ``Store.write_document`` docstring (the route table lives wherever the
    sessions live, written by compare-and-set so several processes lose no update).
    """
    async with _stores(factory, reopen) as stores:
        store = await stores.fresh()
        _equal(await store.read_document("routes.json"), None, "a missing document")
        v1 = await store.write_document("routes.json", b"one", expected_version=None)
        with _raises(WriteConflict, "a second create of one document"):
            await store.write_document("routes.json", b"again", expected_version=None)
        v2 = await store.write_document("routes.json", b"two", expected_version=v1)
        _require(v2 != v1, f"a write must change the version ({v1} -> {v2})")
        with _raises(WriteConflict, "a write at a stale version"):
            await store.write_document("routes.json", b"stale", expected_version=v1)
        _equal(await store.read_document("routes.json"), (b"two", v2), "after the conflicts")
        for bad in ("", ".hidden", "a/b", "x" * 65, "Upper"):
            with _raises(ValueError, f"read_document({bad!r})"):
                await store.read_document(bad)
        _equal(await _listed_ids(store), [], "documents are not listed as sessions")
        _equal(
            dict(await store.recover()),
            {"scanned": 0, "restored": 0, "orphaned_backups": 0, "quarantined": 0},
            "recover() with only a document",
        )
        store = await stores.restart(store)
        doc = await store.read_document("routes.json")
        _equal(None if doc is None else doc[0], b"two", "the document after a restart")
        assert doc is not None
        v3 = await store.write_document("routes.json", b"three", expected_version=doc[1])
        _equal(await store.read_document("routes.json"), (b"three", v3), "written again")


#: The lease, race and sharing checks, part of :data:`STORE_CHECKS`.
LEASE_CHECKS = (
    check_lease_claim_renew_release,
    check_expired_lease_can_be_taken_over,
    check_concurrent_claims_one_wins,
    check_concurrent_saves_never_torn,
    check_cancelled_save_is_old_or_new,
    check_new_session_sharing,
    check_documents_compare_and_set,
)
