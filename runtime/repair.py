"""Stale-stream repair, usable with or without a :class:`~runtime.Runtime`.

A stream is *stale* when its session names it (``active_stream_id``) but no process
runs it any more: no task of the caller runs it and its lease has expired, or was
given up by a shutdown that suspended the turn (a store one process owns,
``Store.exclusive``, has no other process: there it is dead at once).
Repair closes it in the transcript — the pending user message once (``_recovered``),
one assistant marker ``{_error: True, type: "interrupted", interruption_cause:
"process_restart"}`` — clears the pending fields and saves without touching
``updated_at``, always from a FULL load (saving a metadata-only object once wiped a
1,000-message conversation in hermes-webui). The save takes over the expired lease
and frees it in the same write, so two processes never both repair one session.

The CLI's ``runtime sessions show`` uses :func:`load_repaired` on a bare store.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Container

from ._exceptions import SessionBusy
from ._resume import record_of, suspended
from ._session import Message, Session
from .stores.abc import Lease, Store

__all__ = ["is_stale", "leased_elsewhere", "load_repaired", "mark_interrupted", "repair"]

logger = logging.getLogger("runtime")


async def is_stale(
    store: Store,
    session: Session,
    *,
    running: Container[str] = (),
    stale_grace: float = 30.0,
) -> bool:
    """True if ``session``'s active stream is dead.

    :param running: stream ids the caller runs (never stale).
    :param stale_grace: seconds a stream with no lease record (written by a writer that
        takes none) is trusted after ``pending_started_at``.
    :raises StoreError: if the store fails to read the lease.
    """
    stream_id = session.active_stream_id
    if stream_id is None or stream_id in running:
        return False
    if store.exclusive:  # no other process can own it: it is dead
        return True
    lease = await store.lease_state(session.session_id)
    if lease is not None:
        return lease.expires_in <= 0
    if suspended(record_of(session, stream_id)):  # its process saved it and let it go
        return True
    started = session.pending_started_at
    return started is None or time.time() - started >= stale_grace


async def leased_elsewhere(store: Store, session_id: str) -> bool:
    """True if a process may be running the session's stream somewhere else: the store
    is shared and holds an unexpired lease on the session (``expires_in > 0``). Always
    ``False`` for a store one process owns (``store.exclusive``).

    :raises StoreError: if the store fails to read the lease.
    """
    if store.exclusive:
        return False
    lease = await store.lease_state(session_id)
    return lease is not None and lease.expires_in > 0


async def repair(store: Store, full: Session, *, owner: str = "repair", ttl: float = 30.0) -> bool:
    """Close the dead stream of a fully loaded session and save it (``updated_at`` kept).
    Returns ``False`` — nothing written, ``full`` left as it was — if another process
    claimed the session meanwhile.

    :param owner: the name written with the lease the repair takes over (a node id).
    :param ttl: seconds of that lease (it is freed in the same write).
    :raises MetadataOnlySaveError: if ``full`` is metadata-only, before any I/O.
    :raises StoreError: if the save fails; the stored state is then the old one.
    """
    before = full.copy()
    mark_interrupted(full)
    try:
        await store.save(
            full,
            touch_updated_at=False,
            lease=Lease(owner, uuid.uuid4().hex, ttl),
            lease_mode="repair",
        )
    except SessionBusy:
        full.messages = before.messages
        full.active_stream_id = before.active_stream_id
        full.pending_user_message = before.pending_user_message
        full.pending_started_at = before.pending_started_at
        return False
    logger.warning("repaired stale stream of session %s", full.session_id)
    return True


async def load_repaired(
    store: Store, session_id: str, *, stale_grace: float = 30.0, owner: str = "repair"
) -> Session:
    """The full session, its stale stream repaired first (no agent, no runtime).

    :raises InvalidSessionId: for a bad id, before any I/O.
    :raises SessionNotFound: if there is no such session.
    :raises StoreError: if the store fails.
    """
    full = await store.load(session_id)
    if await is_stale(store, full, stale_grace=stale_grace) and not await repair(
        store, full, owner=owner
    ):
        return await store.load(session_id)
    return full


def mark_interrupted(session: Session) -> None:
    """Close a dead stream in the transcript: the pending user message (once) and one
    ``interrupted`` marker; clears the pending fields."""
    pending = session.pending_user_message
    messages = session.messages
    if pending is not None and not _has_user_message(messages, pending):
        messages.append(
            {
                "role": "user",
                "content": pending,
                "_recovered": True,
                "timestamp": session.pending_started_at,
                "stream_id": session.active_stream_id,
            }
        )
    marker: Message = {
        "role": "assistant",
        "content": "The previous turn was interrupted because the process stopped.",
        "_error": True,
        "type": "interrupted",
        "interruption_cause": "process_restart",
        "stream_id": session.active_stream_id,
        "timestamp": time.time(),
    }
    messages.append(marker)
    session.active_stream_id = None
    session.pending_user_message = None
    session.pending_started_at = None


def _has_user_message(messages: list[Message], text: str) -> bool:
    """True if the last user message is ``text`` (a checkpoint already persisted it)."""
    for message in reversed(messages):
        if message.get("role") == "user":
            return bool(message.get("content") == text)
    return False
