"""``MemoryStore``: the reference backend. Everything lives in this process."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from .._events import Event
from .._session import Session
from .abc import RecoveryReport, Store, StoredInfo, not_found, page_after, sort_key, visible_in_list

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Sessions kept as deep-copied dicts in process memory.

    It keeps every rule of the contract that makes sense without a disk: a backup on
    shrinking saves (``backups``), tombstones, and recovery from backups, so that
    :mod:`runtime.testing` can hold every backend to the same behaviour. Nothing
    survives the process.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sessions: dict[str, dict[str, Any]] = {}
        self.backups: dict[str, dict[str, Any]] = {}
        self.tombstones: set[str] = set()
        self.events: dict[tuple[str, str], list[Event]] = {}

    async def _stored_info(self, session_id: str) -> StoredInfo | None:
        d = self.sessions.get(session_id)
        if d is None:
            return None
        return StoredInfo(len(d["messages"]), d["active_stream_id"], d["pending_user_message"])

    async def _write(
        self, session: Session, *, skip_index: bool, backup: bool, events: Sequence[Event]
    ) -> None:
        sid = session.session_id
        if backup and sid in self.sessions:
            self.backups[sid] = self.sessions[sid]
        elif sid in self.backups and len(session.messages) >= len(self.backups[sid]["messages"]):
            del self.backups[sid]  # superseded: recovery would never restore it
        self.sessions[sid] = copy.deepcopy(session.to_dict())
        self.tombstones.discard(sid)
        for event in events:
            log = self.events.setdefault((sid, event.stream_id), [])
            if not log or event.seq > log[-1].seq:
                log.append(Event.from_dict(copy.deepcopy(event.to_dict())))

    async def _load(self, session_id: str) -> Session:
        d = self.sessions.get(session_id)
        if d is None:
            raise not_found(session_id)
        return Session.from_dict(copy.deepcopy(d))

    async def _load_metadata(self, session_id: str) -> Session:
        d = self.sessions.get(session_id)
        if d is None:
            raise not_found(session_id)
        meta = {k: v for k, v in d.items() if k != "messages"}
        meta["message_count"] = len(d["messages"])
        return Session.from_dict(copy.deepcopy(meta), metadata_only=True)

    async def _delete(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)
        self.backups.pop(session_id, None)
        for key in [k for k in self.events if k[0] == session_id]:
            del self.events[key]
        self.tombstones.add(session_id)

    def _visible_keys(self) -> list[tuple[float, str]]:
        return sorted(
            sort_key(d["updated_at"], sid)
            for sid, d in self.sessions.items()
            if visible_in_list(
                d["title"], len(d["messages"]), d["active_stream_id"], d["pending_user_message"]
            )
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
            elif len(live["messages"]) < len(bak["messages"]):
                self.sessions[sid] = bak
                restored += 1
        return {"scanned": len(self.sessions), "restored": restored, "orphaned_backups": orphaned}

    async def _load_events(self, session_id: str, stream_id: str, after_seq: int) -> list[Event]:
        return [e for e in self.events.get((session_id, stream_id), ()) if e.seq > after_seq]
