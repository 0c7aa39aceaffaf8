"""The tool ledger's conformance checks against broken backends (each check must catch
the bug it is about), the capability gate, and the ledger's record type.

The checks themselves run on every backend in test_conformance.py (they are part of
``STORE_CHECKS``)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from runtime import MemoryStore, Store, ToolCallNotFound, ToolCallRecord
from runtime.stores.abc import CallKey, Lease, new_tool_call
from runtime.testing import (
    STORE_CHECKS,
    StoreCheck,
    check_tool_ledger_cancelled_write_is_whole,
    check_tool_ledger_deleted_with_session,
    check_tool_ledger_first_record_wins,
    check_tool_ledger_is_fenced,
    check_tool_ledger_refuses_bad_input,
    check_tool_ledger_result_needs_intent,
    check_tool_ledger_round_trip,
)

LEDGER_CHECKS = [c for c in STORE_CHECKS if c.__name__.startswith("check_tool_ledger_")]


# -- broken backends: MemoryStore with one rule of the ledger broken on purpose ---------


class ListsByCallId(MemoryStore):
    """Lists the calls sorted by id, not in the order they started."""

    async def _tool_calls(self, session_id: str, stream_id: str) -> list[ToolCallRecord]:
        return sorted(await super()._tool_calls(session_id, stream_id), key=lambda r: r.call_id)


class SharesResults(MemoryStore):
    """Hands out the stored record's own result object."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[tuple[str, str, str], ToolCallRecord] = {}

    async def _ledger_put(self, record: ToolCallRecord) -> None:
        await super()._ledger_put(record)
        self.live[(record.session_id, record.stream_id, record.call_id)] = record

    async def _tool_calls(self, session_id: str, stream_id: str) -> list[ToolCallRecord]:
        out = await super()._tool_calls(session_id, stream_id)
        return [self.live.get((session_id, stream_id, r.call_id), r) for r in out]


class OverwritesIntents(MemoryStore):
    """A second intent replaces the first (a resumed turn would re-run the call)."""

    async def _start_tool_call(self, record: ToolCallRecord, lease: Lease | None) -> ToolCallRecord:
        await self._ledger_put(record)
        return record


class LastResultWins(MemoryStore):
    async def _finish_tool_call(
        self, key: CallKey, result: Any, error: str | None, lease: Lease | None
    ) -> ToolCallRecord:
        stored = await self._ledger_get(*key)
        if stored is not None and stored.state != "started":
            from dataclasses import replace

            await self._ledger_put(replace(stored, state="started", result=None, error=None))
        return await super()._finish_tool_call(key, result, error, lease)


class ResultWithoutIntent(MemoryStore):
    """Records a result even when no intent was recorded (an intent made up)."""

    async def _finish_tool_call(
        self, key: CallKey, result: Any, error: str | None, lease: Lease | None
    ) -> ToolCallRecord:
        if key[0] in self.sessions and not await self._ledger_get(*key):
            await self._ledger_put(new_tool_call(*key, "?", "", 0))
        return await super()._finish_tool_call(key, result, error, lease)


class LedgerForUnsavedSessions(MemoryStore):
    """Writes ledger records without looking for the session."""

    async def _ledger_change(self, key: Any, lease: Lease | None, change: Any) -> ToolCallRecord:
        stored = await self._ledger_get(*key)
        record: ToolCallRecord = change(stored)
        if record is not stored:
            await self._ledger_put(record)
        return record


class NoNameCheck(MemoryStore):
    """Skips the checks of the intent's fields."""

    async def record_tool_call(  # type: ignore[override]
        self, session_id: str, stream_id: str, call_id: str, name: str, arguments: Any, **kw: Any
    ) -> ToolCallRecord:
        record = ToolCallRecord(
            session_id, stream_id, call_id, name, arguments, "started", attempt=kw.get("attempt", 0)
        )
        return await self._start_tool_call(record, kw.get("lease"))


class UnfencedLedger(MemoryStore):
    """Checks leases on saves, not on ledger writes."""

    async def _ledger_change(self, key: Any, lease: Lease | None, change: Any) -> ToolCallRecord:
        return await super()._ledger_change(key, None, change)


class KeepsLedgerOnDelete(MemoryStore):
    async def _delete(self, session_id: str) -> None:
        kept = {k: v for k, v in self.ledger.items() if k[0] == session_id}
        await super()._delete(session_id)
        self.ledger.update(kept)


class TornIntents(MemoryStore):
    """Writes an intent in two steps with a yield between: a cancelled write leaves
    a record without its name and arguments."""

    async def _ledger_put(self, record: ToolCallRecord) -> None:
        if record.state == "started":
            from dataclasses import replace

            await super()._ledger_put(replace(record, name="", arguments=""))
            await anyio.sleep(0.0005)
        await super()._ledger_put(record)


BROKEN: list[tuple[type[MemoryStore], StoreCheck]] = [
    (ListsByCallId, check_tool_ledger_round_trip),
    (SharesResults, check_tool_ledger_round_trip),
    (OverwritesIntents, check_tool_ledger_first_record_wins),
    (LastResultWins, check_tool_ledger_first_record_wins),
    (ResultWithoutIntent, check_tool_ledger_result_needs_intent),
    (LedgerForUnsavedSessions, check_tool_ledger_result_needs_intent),
    (NoNameCheck, check_tool_ledger_refuses_bad_input),
    (UnfencedLedger, check_tool_ledger_is_fenced),
    (KeepsLedgerOnDelete, check_tool_ledger_deleted_with_session),
    (TornIntents, check_tool_ledger_cancelled_write_is_whole),
]


@pytest.mark.parametrize(
    ("broken", "check"), BROKEN, ids=[f"{cls.__name__}-{c.__name__}" for cls, c in BROKEN]
)
async def test_ledger_check_catches_broken_backend(
    broken: type[MemoryStore], check: StoreCheck
) -> None:
    await check(MemoryStore)  # the reference backend passes the same check
    with pytest.raises(AssertionError):
        await check(broken)


def _restart_without_ledger(store: Store) -> MemoryStore:
    """A "restart" that keeps the sessions but loses the ledger: not durable."""
    assert isinstance(store, MemoryStore)
    again = MemoryStore()
    again.sessions, again.backups, again.tombstones = (
        store.sessions,
        store.backups,
        store.tombstones,
    )
    return again


@pytest.mark.parametrize(
    "check",
    [
        check_tool_ledger_round_trip,
        check_tool_ledger_first_record_wins,
        check_tool_ledger_is_fenced,
        check_tool_ledger_cancelled_write_is_whole,
    ],
    ids=lambda c: c.__name__,
)
async def test_ledger_checks_catch_a_ledger_lost_on_restart(check: StoreCheck) -> None:
    with pytest.raises(AssertionError):
        await check(MemoryStore, reopen=_restart_without_ledger)


# -- the capability gate ----------------------------------------------------------------


class NoLedger(MemoryStore):
    supports_tool_ledger = False


class ClaimsALedgerItLacks(MemoryStore):
    """Says it has no ledger, yet records calls: the gate must notice."""

    supports_tool_ledger = False

    def _check_ledger(self) -> None:
        pass


@pytest.mark.parametrize("check", LEDGER_CHECKS, ids=lambda c: c.__name__)
async def test_ledger_checks_pass_on_a_store_without_one(check: StoreCheck) -> None:
    await check(NoLedger)
    with pytest.raises(AssertionError, match="NotImplementedError"):
        await check(ClaimsALedgerItLacks)


async def test_a_store_without_a_ledger_names_the_class_and_the_flag() -> None:
    async with NoLedger() as store:
        await store.save(store.new_session(session_id="s"))
        with pytest.raises(NotImplementedError, match=r"NoLedger .*supports_tool_ledger"):
            await store.record_tool_call("s", "st", "c1", "grep", {})
    assert Store.supports_tool_ledger is False
    assert MemoryStore.supports_tool_ledger is True


# -- the record type and errors ---------------------------------------------------------


def test_record_round_trips_through_its_dict_and_refuses_bad_shapes() -> None:
    record = ToolCallRecord("s", "st", "c1", "grep", {"a": [1]}, "completed", {"n": 1}, None, 2)
    assert ToolCallRecord.from_dict(record.to_dict()) == record
    bad_fields = (
        ("state", "running"),
        ("attempt", "1"),
        ("arguments", 5),
        ("name", None),
        ("started_at", None),
        ("finished_at", "now"),
    )
    for field, bad in bad_fields:
        with pytest.raises(ValueError, match=f"'{field}' is {bad!r}"):
            ToolCallRecord.from_dict({**record.to_dict(), field: bad})


async def test_tool_call_not_found_is_a_lookup_error_naming_the_call() -> None:
    async with MemoryStore() as store:
        await store.save(store.new_session(session_id="s"))
        with pytest.raises(LookupError) as info:
            await store.record_tool_result("s", "st", "call_9", result=1)
    assert isinstance(info.value, ToolCallNotFound)
    assert "'call_9'" in str(info.value) and "'st'" in str(info.value)
