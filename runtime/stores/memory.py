"""``MemoryStore``: the reference backend. Everything lives in this process."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from .._events import Event, event_records, events_from_records, record_last_seq, records_after
from .._json import kept
from .._session import Session
from .abc import (
    RecoveryReport,
    Store,
    StoredInfo,
    ToolCallRecord,
    not_found,
    page_after,
    sort_key,
    visible_in_list,
)

__all__ = ["MemoryStore"]


class Stored:
    """One saved state of a session: its JSON (``bytes``) and the fields the store
    reads without decoding it (message count, listing fields)."""

    __slots__ = (
        "active_stream_id",
        "blob",
        "message_count",
        "pending_user_message",
        "title",
        "updated_at",
    )

    def __init__(self, session: Session) -> None:
        self.fill(session)

    def fill(self, session: Session) -> None:
        """Hold ``session``'s state now (what a save made of a state nobody else holds
        does, instead of a new object per checkpoint: each would be one more object
        that lives past young collections, W6)."""
        self.blob = kept(orjson.dumps(session.to_dict()))
        self.message_count = session.message_count
        self.title = session.title
        self.updated_at = session.updated_at
        self.active_stream_id = session.active_stream_id
        self.pending_user_message = session.pending_user_message

    def to_dict(self) -> dict[str, Any]:
        """A new dict of the saved session (``Session.to_dict()`` shape)."""
        d: dict[str, Any] = orjson.loads(self.blob)
        return d


class MemoryStore(Store):
    """Sessions kept in process memory as the JSON they were saved as.

    It keeps every rule of the contract that makes sense without a disk: a backup on
    shrinking saves (``backups``), tombstones, and recovery from backups, so that
    :mod:`runtime.testing` can hold every backend to the same behaviour. Like a real
    store, it copies in and out through JSON: a loaded session shares nothing with
    the saved one, and data must be JSON-ready. Nothing survives the process.

    :ivar sessions: ``{session_id: Stored}``, the current state of each session.
    :ivar backups: ``{session_id: Stored}``, the state before a shrinking save.
    :ivar tombstones: ids of deleted sessions.
    :ivar documents: ``{name: (bytes, version)}``, the named documents (route table).
    :ivar events: ``{(session_id, stream_id): (last seq, JSON lines)}``, the durable
        events of each stream, one record a line (a run of tokens is one record; see
        :func:`runtime._events.event_records`).
    :ivar ledger: ``{(session_id, stream_id): {call_id: JSON}}``, the tool ledger of
        each stream, in the order the calls started.
    """

    supports_tool_ledger = True

    def __init__(self, *, redact_keys: Iterable[str] | None = None) -> None:
        super().__init__(redact_keys=redact_keys)
        self.sessions: dict[str, Stored] = {}
        self.backups: dict[str, Stored] = {}
        self.tombstones: set[str] = set()
        self.events: dict[tuple[str, str], tuple[int, bytearray]] = {}
        self.documents: dict[str, tuple[bytes, int]] = {}
        self.ledger: dict[tuple[str, str], dict[str, bytes]] = {}

    async def _stored_info(self, session_id: str) -> StoredInfo | None:
        d = self.sessions.get(session_id)
        if d is None:
            return None
        return StoredInfo(d.message_count, d.active_stream_id, d.pending_user_message)

    async def _write(
        self, session: Session, *, skip_index: bool, backup: bool, events: Sequence[Event]
    ) -> None:
        sid = session.session_id
        current = self.sessions.get(sid)
        if backup and current is not None:
            self.backups[sid] = current
            current = None
        else:
            kept_bak = self.backups.get(sid)
            if kept_bak is not None and session.message_count >= kept_bak.message_count:
                del self.backups[sid]  # superseded: recovery would never restore it
            elif kept_bak is current:  # recovery restored the backup: both hold it
                current = None
        if current is None:
            self.sessions[sid] = Stored(session)
        else:
            current.fill(session)
        self.tombstones.discard(sid)
        for rec in event_records(events):  # a run of tokens is one record (see _events)
            key = (sid, rec["stream_id"])
            last, lines = self.events.get(key) or (0, bytearray())
            cut = records_after((rec,), last)
            if cut:
                lines += orjson.dumps(cut[0])
                lines += b"\n"
                self.events[key] = (record_last_seq(cut[0]), lines)

    async def _discard_backup(self, session_id: str) -> None:
        self.backups.pop(session_id, None)

    async def _load(self, session_id: str) -> Session:
        d = self.sessions.get(session_id)
        if d is None:
            raise not_found(session_id)
        return Session.from_dict(d.to_dict())

    async def _load_metadata(self, session_id: str) -> Session:
        d = self.sessions.get(session_id)
        if d is None:
            raise not_found(session_id)
        meta = d.to_dict()
        del meta["messages"]
        meta["message_count"] = d.message_count
        return Session.from_dict(meta, metadata_only=True)

    async def _delete(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)
        self.backups.pop(session_id, None)
        for key in [k for k in self.events if k[0] == session_id]:
            del self.events[key]
        for key in [k for k in self.ledger if k[0] == session_id]:
            del self.ledger[key]
        self.tombstones.add(session_id)

    def _visible_keys(self) -> list[tuple[float, str]]:
        return sorted(
            sort_key(d.updated_at, sid)
            for sid, d in self.sessions.items()
            if visible_in_list(d.title, d.message_count, d.active_stream_id, d.pending_user_message)
        )

    async def _list_page(self, limit: int, after: tuple[float, str] | None) -> list[Session]:
        out = []
        for _, sid in page_after(self._visible_keys(), after):
            out.append(await self._load_metadata(sid))
            if len(out) == limit:
                break
        return out

    async def _has_more(self, last: Session) -> bool:
        bound = sort_key(last.updated_at, last.session_id)
        return any(k > bound for k in self._visible_keys())

    async def _recover(self) -> RecoveryReport:
        restored = orphaned = 0
        for sid, bak in list(self.backups.items()):
            if sid in self.tombstones:
                continue
            live = self.sessions.get(sid)
            if live is None:
                self.sessions[sid] = bak
                orphaned += 1
                restored += 1
            elif live.message_count < bak.message_count:
                self.sessions[sid] = bak
                restored += 1
        return {
            "scanned": len(self.sessions),
            "restored": restored,
            "orphaned_backups": orphaned,
            "quarantined": 0,
        }

    async def _load_events(self, session_id: str, stream_id: str, after_seq: int) -> list[Event]:
        _last, lines = self.events.get((session_id, stream_id)) or (0, bytearray())
        return events_from_records(map(orjson.loads, lines.splitlines()), after_seq)

    async def _read_document(self, name: str) -> tuple[bytes, int] | None:
        return self.documents.get(name)

    async def _store_document(self, name: str, data: bytes, version: int) -> None:
        self.documents[name] = (data, version)

    async def _ledger_get(
        self, session_id: str, stream_id: str, call_id: str
    ) -> ToolCallRecord | None:
        blob = self.ledger.get((session_id, stream_id), {}).get(call_id)
        return None if blob is None else ToolCallRecord.from_dict(orjson.loads(blob))

    async def _ledger_put(self, record: ToolCallRecord) -> None:
        calls = self.ledger.setdefault((record.session_id, record.stream_id), {})
        calls[record.call_id] = kept(orjson.dumps(record.to_dict()))

    async def _tool_calls(self, session_id: str, stream_id: str) -> list[ToolCallRecord]:
        calls = self.ledger.get((session_id, stream_id), {})
        return [ToolCallRecord.from_dict(orjson.loads(blob)) for blob in calls.values()]
