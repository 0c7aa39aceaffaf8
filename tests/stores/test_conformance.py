"""The public store conformance suite (runtime.testing), run against every backend,
and run against broken backends to show that each check catches its rule's violation."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest

from runtime._events import Event
from runtime._session import Session
from runtime.stores.abc import RecoveryReport, SaveDelta, SaveRequest, Store, plan_save
from runtime.stores.files import FileStore
from runtime.stores.memory import MemoryStore, Stored
from runtime.testing import (
    STORE_CHECKS,
    StoreCheck,
    check_cancelled_save_is_old_or_new,
    check_concurrent_claims_one_wins,
    check_concurrent_saves_never_torn,
    check_delete_is_never_recovered,
    check_delta_save_matches_full_save,
    check_discard_backup_keeps_none,
    check_events_round_trip,
    check_expired_lease_can_be_taken_over,
    check_lease_claim_renew_release,
    check_list_hides_empty_untitled,
    check_list_pagination,
    check_list_sorted_newest_first,
    check_loads_are_independent_copies,
    check_new_session_in_memory_only,
    check_recover_clean_store_is_noop,
    check_shrinking_save_keeps_backup,
    check_skip_index_save_is_durable,
    check_token_runs_round_trip,
    check_wrong_delta_refused,
    run_store_conformance,
)

if TYPE_CHECKING:
    from .conftest import Backend


def _name(check: StoreCheck) -> str:
    return check.__name__.removeprefix("check_")


@pytest.mark.parametrize("check", STORE_CHECKS, ids=_name)
async def test_store_conformance(check: StoreCheck, backend: Backend) -> None:
    await check(backend.factory, reopen=backend.reopen)


def test_every_check_is_listed_and_documented() -> None:
    import runtime.testing as testing

    defined = {name for name in dir(testing) if name.startswith("check_")}
    assert defined == {c.__name__ for c in (*STORE_CHECKS, *testing.EVENT_LOG_CHECKS)}
    assert len(STORE_CHECKS) == len(set(STORE_CHECKS))
    for check in STORE_CHECKS:
        assert check.__doc__ is not None
        assert "Rule:" in check.__doc__, f"{check.__name__} must name its rule and source"
    assert set(testing.__all__) >= defined | {"STORE_CHECKS", "run_store_conformance"}


async def test_run_store_conformance_passes_for_the_reference_backend() -> None:
    await run_store_conformance(MemoryStore)


async def test_run_store_conformance_passes_for_file_store(tmp_path: Path) -> None:
    roots = iter(range(1000))
    await run_store_conformance(
        lambda: FileStore(tmp_path / str(next(roots))),
        reopen=lambda store: FileStore(store.root),  # type: ignore[attr-defined]
    )


# -- broken backends: each check must catch the bug it is about -----------------------
# Each class below is MemoryStore with one rule of the contract broken on purpose.


class NoBackup(MemoryStore):
    async def _write(
        self, session: Session, *, skip_index: bool, backup: bool, events: Sequence[Event]
    ) -> None:
        await super()._write(session, skip_index=skip_index, backup=False, events=events)


class KeepsBackupOnDiscard(MemoryStore):
    async def _discard_backup(self, session_id: str) -> None:
        pass


class DropsCheckpoints(MemoryStore):
    async def _write(
        self, session: Session, *, skip_index: bool, backup: bool, events: Sequence[Event]
    ) -> None:
        if not skip_index:
            await super()._write(session, skip_index=skip_index, backup=backup, events=events)


class OldestFirst(MemoryStore):
    def _visible_keys(self) -> list[tuple[float, str]]:
        return sorted(super()._visible_keys(), key=lambda k: (-k[0], k[1]))


class NoTombstones(MemoryStore):
    async def _delete(self, session_id: str) -> None:
        backup = self.backups.get(session_id)
        await super()._delete(session_id)
        self.tombstones.discard(session_id)
        if backup is not None:
            self.backups[session_id] = backup


class SharesItsState(MemoryStore):
    """Hands out one object per session, shared by every load."""

    def __init__(self) -> None:
        super().__init__()
        self.shared: dict[str, Session] = {}

    async def _load(self, session_id: str) -> Session:
        if session_id not in self.shared:
            self.shared[session_id] = await super()._load(session_id)
        return self.shared[session_id]


class DuplicatesEvents(MemoryStore):
    async def _write(
        self, session: Session, *, skip_index: bool, backup: bool, events: Sequence[Event]
    ) -> None:
        await super()._write(session, skip_index=skip_index, backup=backup, events=())
        if events and session.active_stream_id is not None:
            key = (session.session_id, session.active_stream_id)
            _last, lines = self.events.get(key) or (0, bytearray())
            for e in events:  # no check of what is already there
                lines += e.json() + b"\n"
            self.events[key] = (events[-1].seq, lines)


class _BreaksTokenRuns(MemoryStore):
    """Keeps a run of token events as one record, as MemoryStore does, then changes
    the stored record with :meth:`damage`."""

    def damage(self, texts: list[str], ts: list[float]) -> None:
        raise NotImplementedError

    async def _write(
        self, session: Session, *, skip_index: bool, backup: bool, events: Sequence[Event]
    ) -> None:
        await super()._write(session, skip_index=skip_index, backup=backup, events=events)
        for key, (last, lines) in list(self.events.items()):
            records = [orjson.loads(line) for line in lines.splitlines()]
            for rec in records:
                if len(rec.get("texts", ())) >= 3:
                    self.damage(rec["texts"], rec["ts"])
            out = bytearray(b"".join(orjson.dumps(r) + b"\n" for r in records))
            self.events[key] = (last, out)


class DropsInsideTokenRuns(_BreaksTokenRuns):
    def damage(self, texts: list[str], ts: list[float]) -> None:
        del texts[1], ts[1]  # the later events move up one seq: a gap at the run's end


class ReordersInsideTokenRuns(_BreaksTokenRuns):
    def damage(self, texts: list[str], ts: list[float]) -> None:
        texts[0], texts[1] = texts[1], texts[0]


class SavesNewSessions(MemoryStore):
    def new_session(self, **fields: object) -> Session:
        session = super().new_session(**fields)
        self.sessions[session.session_id] = Stored(session)
        return session


class AlwaysMorePages(MemoryStore):
    async def _has_more(self, last: Session) -> bool:
        return True


class ListsEverything(MemoryStore):
    def _visible_keys(self) -> list[tuple[float, str]]:
        return sorted((-d.updated_at, sid) for sid, d in self.sessions.items())


class RecoverRestoresBackupsAlways(MemoryStore):
    async def _write(
        self, session: Session, *, skip_index: bool, backup: bool, events: Sequence[Event]
    ) -> None:
        sid = session.session_id
        if sid in self.sessions:
            self.backups[sid] = self.sessions[sid]  # a backup on every save, never dropped
        self.sessions[sid] = Stored(session)

    async def _recover(self) -> RecoveryReport:
        restored = 0
        for sid, bak in self.backups.items():
            if sid in self.sessions and bak.blob != self.sessions[sid].blob:
                self.sessions[sid] = bak
                restored += 1
        return {
            "scanned": len(self.sessions),
            "restored": restored,
            "orphaned_backups": 0,
            "quarantined": 0,
        }


class NoFencing(MemoryStore):
    """Keeps leases but never checks them."""

    async def _save(self, session: Session, request: SaveRequest) -> None:
        await super()._save(
            session,
            SaveRequest(
                request.skip_index, request.touch_updated_at, request.events, None, "renew"
            ),
        )


class LeasesNeverExpire(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self._clock = lambda: 0.0  # the deadline never comes


class CheckThenWrite(MemoryStore):
    """Checks the lease, yields to other tasks, then writes: the race conditional
    writes exist to prevent."""

    async def _save(self, session: Session, request: SaveRequest) -> None:
        import anyio

        from runtime.stores.abc import check_lease

        sid = session.session_id
        check_lease(sid, self._held_lease(sid), request.lease, request.lease_mode, None)
        backup = plan_save(session, await self._stored_info(sid), request)
        await anyio.sleep(0.01)
        await self._write(session, skip_index=request.skip_index, backup=backup, events=())
        if request.lease is not None:
            self._leases[sid] = (request.lease.owner, request.lease.token, self._clock() + 60)


class TornWrites(MemoryStore):
    """Writes the metadata, yields, then the messages: a cancelled or racing save
    leaves half of each."""

    async def _save(self, session: Session, request: SaveRequest) -> None:
        import anyio

        sid = session.session_id
        backup = plan_save(session, await self._stored_info(sid), request)
        meta = Session.from_dict(session.meta_dict())
        if sid in self.sessions:
            meta.messages = Session.from_dict(self.sessions[sid].to_dict()).messages
        await self._write(meta, skip_index=request.skip_index, backup=backup, events=())
        # Racing saves finish in another order than they started (shorter lists
        # later, 5 ms apart): the last metadata and the last messages come from
        # different saves.
        await anyio.sleep(0.005 * max(1, 8 - len(session.messages)))
        torn = Session.from_dict(self.sessions[sid].to_dict())
        torn.messages = session.messages
        await self._write(torn, skip_index=request.skip_index, backup=False, events=())


class IgnoresDeltaKeep(MemoryStore):
    """Applies a delta as if messages were only appended: a change in place of the last
    stored message (``keep = base - 1``) is lost."""

    writes_deltas = True

    async def _write(
        self,
        session: Session,
        *,
        skip_index: bool,
        backup: bool,
        events: Sequence[Event],
        delta: SaveDelta | None = None,
    ) -> None:
        old = self.sessions.get(session.session_id)
        if delta is not None and old is not None:
            kept = old.to_dict()["messages"][: delta.base]
            d = session.to_dict()
            d["messages"] = kept + session.messages[delta.base :]
            session = Session.from_dict(d)
        await super()._write(session, skip_index=skip_index, backup=backup, events=events)


class AppliesStaleDeltas(MemoryStore):
    """Drops the delta before the conditional write, so a wrong base is never seen."""

    async def _save(self, session: Session, request: SaveRequest) -> None:
        await super()._save(session, dataclasses.replace(request, delta=None))


BROKEN: list[tuple[type[MemoryStore], StoreCheck]] = [
    (IgnoresDeltaKeep, check_delta_save_matches_full_save),
    (AppliesStaleDeltas, check_wrong_delta_refused),
    (NoFencing, check_lease_claim_renew_release),
    (LeasesNeverExpire, check_expired_lease_can_be_taken_over),
    (CheckThenWrite, check_concurrent_claims_one_wins),
    (TornWrites, check_concurrent_saves_never_torn),
    (TornWrites, check_cancelled_save_is_old_or_new),
    (NoBackup, check_shrinking_save_keeps_backup),
    (KeepsBackupOnDiscard, check_discard_backup_keeps_none),
    (DropsCheckpoints, check_skip_index_save_is_durable),
    (OldestFirst, check_list_sorted_newest_first),
    (NoTombstones, check_delete_is_never_recovered),
    (SharesItsState, check_loads_are_independent_copies),
    (DuplicatesEvents, check_events_round_trip),
    (DropsInsideTokenRuns, check_token_runs_round_trip),
    (ReordersInsideTokenRuns, check_token_runs_round_trip),
    (SavesNewSessions, check_new_session_in_memory_only),
    (AlwaysMorePages, check_list_pagination),
    (ListsEverything, check_list_hides_empty_untitled),
    (RecoverRestoresBackupsAlways, check_recover_clean_store_is_noop),
]


@pytest.mark.parametrize(
    ("broken", "check"), BROKEN, ids=[f"{cls.__name__}-{c.__name__}" for cls, c in BROKEN]
)
async def test_check_catches_broken_backend(broken: type[MemoryStore], check: StoreCheck) -> None:
    with pytest.raises(AssertionError):
        await check(broken)


async def test_run_store_conformance_reports_every_failed_check() -> None:
    with pytest.raises(AssertionError) as info:
        await run_store_conformance(NoBackup)
    message = str(info.value)
    assert "check_shrinking_save_keeps_backup" in message
    assert "check_empty_overwrite_allowed_when_idle" in message
    assert "check_save_load_round_trip" not in message
    group = info.value.__cause__
    assert isinstance(group, ExceptionGroup)
    assert all(isinstance(e, AssertionError) for e in group.exceptions)


class Prefilled(MemoryStore):
    """A factory bug: the "fresh" store already holds a session."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions["leftover"] = Session("leftover", title="left over").to_dict()


async def test_factory_must_give_an_empty_store() -> None:
    with pytest.raises(AssertionError, match="empty backing data"):
        await check_shrinking_save_keeps_backup(Prefilled)


class CheckpointsNotDurable(MemoryStore):
    """Checkpoint saves land in a per-instance cache that a restart loses."""

    def __init__(self) -> None:
        super().__init__()
        self.cache: dict[str, Session] = {}

    async def _write(
        self, session: Session, *, skip_index: bool, backup: bool, events: Sequence[Event]
    ) -> None:
        if skip_index:
            self.cache[session.session_id] = Session.from_dict(copy.deepcopy(session.to_dict()))
        else:
            self.cache.pop(session.session_id, None)
            await super()._write(session, skip_index=skip_index, backup=backup, events=events)

    async def _load(self, session_id: str) -> Session:
        cached = self.cache.get(session_id)
        if cached is not None:
            return Session.from_dict(copy.deepcopy(cached.to_dict()))
        return await super()._load(session_id)

    async def _load_metadata(self, session_id: str) -> Session:
        cached = self.cache.get(session_id)
        if cached is not None:
            return Session.from_dict(cached.meta_dict(), metadata_only=True)
        return await super()._load_metadata(session_id)


def _restart_keeping_dicts(store: Store) -> MemoryStore:
    assert isinstance(store, MemoryStore)
    again = CheckpointsNotDurable()
    again.sessions, again.backups = store.sessions, store.backups
    return again


async def test_reopen_catches_what_one_instance_cannot() -> None:
    """Within one instance the non-durable checkpoints look fine; only the restart
    branch (``reopen``) of the check exposes them."""
    await check_skip_index_save_is_durable(CheckpointsNotDurable)
    with pytest.raises(AssertionError, match="after restart"):
        await check_skip_index_save_is_durable(CheckpointsNotDurable, reopen=_restart_keeping_dicts)
