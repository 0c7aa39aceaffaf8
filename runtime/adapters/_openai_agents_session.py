"""``RuntimeSession``: the OpenAI Agents SDK's ``Session`` protocol on a runtime store."""

from __future__ import annotations

import time
import uuid
import weakref
from collections.abc import Mapping
from typing import cast

import anyio
from agents.items import TResponseInputItem
from agents.memory import SessionSettings

from .._exceptions import SessionBusy, SessionNotFound, WriteConflict
from .._session import Message, Session, validate_session_id
from ..stores.abc import Lease, SaveDelta, Store
from ._openai_items import chat_message, is_assistant_side, to_input_items

__all__ = ["RuntimeSession"]

#: Private message key holding the SDK items a stored message stands for.
ITEMS_KEY = "_items"
#: the owner named by the lease a write takes and frees in the same save
_LEASE_OWNER = "openai-agents-session"
#: seconds of that lease (it never outlives the save)
_LEASE_TTL = 30.0
#: tries of a write that found the stored messages changed between its load and save
_WRITE_ATTEMPTS = 3

# One lock per (store, session id), shared by every RuntimeSession on them.
_locks: weakref.WeakKeyDictionary[Store, dict[str, anyio.Lock]] = weakref.WeakKeyDictionary()


class RuntimeSession:
    """An OpenAI Agents SDK ``Session`` (``get_items``, ``add_items``, ``pop_item``,
    ``clear_session``) whose conversation is a runtime session in ``store``.

    ::

        async with FileStore(".runtime") as store:
            session = RuntimeSession("support-42", store)
            result = await Runner.run(assistant, "Hi", session=session)

    Items are kept as the runtime keeps every conversation: OpenAI chat-completions
    messages (so ``runtime sessions show``, the HTTP API and runtime turns read them),
    each holding the exact SDK items it stands for under the private key ``_items``.
    An assistant's consecutive items (text, reasoning, parallel function calls) are one
    assistant message with a ``tool_calls`` list; each tool output is one ``tool``
    message. ``get_items`` returns the stored items exactly as they were added; a
    message a runtime turn wrote (no ``_items``) is read as the items it converts to.

    Every call is one durable store save (or load), serialised per (store, session) in
    this process. The store must be open while the session is used. Writes are refused
    (:class:`~runtime.SessionBusy`) while a runtime turn owns the session, also one that
    starts between a write's load and its save (the save is conditional: it takes the
    session's lease if free and frees it in the same write); a write that finds the
    stored messages changed in between (a turn ran) loads again and retries, so it never
    overwrites them. A stream left by a process that died is repaired when a
    :class:`~runtime.Runtime` reads the session.

    ``pop_item`` removes for good: its save discards the session's backup
    (``Store.save(discard_backup=True)``), so ``recover()`` never brings a popped item
    back. ``clear_session`` deletes the session (a tombstone), so it stays cleared.

    :param session_id: the runtime session id (``[A-Za-z0-9_-]{1,64}``).
    :param store: an open :class:`~runtime.Store`.
    :param session_settings: the SDK's settings; ``limit`` is the default of
        :meth:`get_items`.
    :param title: the title of the session when this creates it.
    :raises InvalidSessionId: for a bad id, before any I/O.
    """

    def __init__(
        self,
        session_id: str,
        store: Store,
        *,
        session_settings: SessionSettings | None = None,
        title: str = "Untitled",
    ) -> None:
        self.session_id = validate_session_id(session_id)
        self.store = store
        self.session_settings = session_settings or SessionSettings()
        self.title = title

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The conversation's items, oldest first; the latest ``limit`` ones when
        ``limit`` (or ``session_settings.limit``) is set.

        :raises ValueError: for a negative ``limit``.
        """
        if limit is None:
            limit = self.session_settings.limit
        if limit is not None and (isinstance(limit, bool) or limit < 0):
            raise ValueError(f"invalid limit {limit!r}: must be an int >= 0 or None")
        if limit == 0:
            return []
        session = await self._load()
        items = [] if session is None else _items(session.messages)
        return items if limit is None else items[-limit:]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` and save the session durably (creating it if needed).

        :raises TypeError: if an item is not a dict, or not JSON-ready; nothing is saved.
        :raises SessionBusy: while a runtime turn owns the session.
        """
        for item in items:
            if not isinstance(item, Mapping):
                raise TypeError(f"invalid item {item!r}: must be a dict (a Responses input item)")
        if not items:
            return
        async with self._lock():
            conflicts = 0
            while True:
                session = await self._load_for_write(create=True)
                assert session is not None
                base = len(session.messages)
                for item in items:
                    _append(session.messages, cast("TResponseInputItem", dict(item)))
                try:
                    await self._save(session, base)
                    return
                except WriteConflict:
                    conflicts += 1
                    if conflicts == _WRITE_ATTEMPTS:
                        raise

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the latest item; ``None`` when there is none.

        :raises SessionBusy: while a runtime turn owns the session.
        """
        async with self._lock():
            conflicts = 0
            while True:
                session = await self._load_for_write(create=False)
                if session is None or not session.messages:
                    return None
                messages = session.messages
                base = len(messages)
                group = _message_items(messages[-1])
                item = group.pop()
                if group:
                    messages[-1] = _message(group, messages[-1].get("timestamp"))
                else:
                    messages.pop()
                try:
                    await self._save(session, base, discard_backup=True)  # removed for good
                    return item
                except WriteConflict:
                    conflicts += 1
                    if conflicts == _WRITE_ATTEMPTS:
                        raise

    async def clear_session(self) -> None:
        """Remove every item: the runtime session is deleted (a later ``add_items``
        starts it anew), so no backup brings the items back.

        :raises SessionBusy: while a runtime turn owns the session.
        """
        async with self._lock():
            if await self._load_for_write(create=False) is not None:
                await self.store.delete(self.session_id)

    # -- internals ----------------------------------------------------------------------

    def _lock(self) -> anyio.Lock:
        per_store = _locks.setdefault(self.store, {})
        lock = per_store.get(self.session_id)
        if lock is None:
            lock = per_store[self.session_id] = anyio.Lock()
        return lock

    async def _load(self) -> Session | None:
        try:
            return await self.store.load(self.session_id)
        except SessionNotFound:
            return None

    async def _save(self, session: Session, base: int, *, discard_backup: bool = False) -> None:
        """The conditional write: only while no turn holds the session's lease (else
        :class:`SessionBusy`) and the store still holds ``base`` messages (else
        :class:`WriteConflict`); every message is written."""
        await self.store.save(
            session,
            lease=Lease(_LEASE_OWNER, uuid.uuid4().hex, _LEASE_TTL),
            lease_mode="repair",
            delta=SaveDelta(base, 0),
            discard_backup=discard_backup,
        )

    async def _load_for_write(self, *, create: bool) -> Session | None:
        session = await self._load()
        if session is None:
            return (
                self.store.new_session(session_id=self.session_id, title=self.title)
                if create
                else None
            )
        if session.active_stream_id is not None:
            raise SessionBusy(self.session_id, session.active_stream_id)
        return session


def _message_items(message: Message) -> list[TResponseInputItem]:
    items = message.get(ITEMS_KEY)
    if isinstance(items, list):
        return list(items)
    return to_input_items([message])


def _items(messages: list[Message]) -> list[TResponseInputItem]:
    return [item for message in messages for item in _message_items(message)]


def _message(items: list[TResponseInputItem], timestamp: object = None) -> Message:
    message = chat_message(items)
    message[ITEMS_KEY] = items
    message["timestamp"] = timestamp if isinstance(timestamp, float) else time.time()
    return message


def _append(messages: list[Message], item: TResponseInputItem) -> None:
    """Add ``item`` to the last message when both are the assistant's, else as a new one."""
    if messages and is_assistant_side(item):
        last = messages[-1]
        group = _message_items(last)
        if last.get("role") == "assistant" and all(is_assistant_side(i) for i in group):
            messages[-1] = _message([*group, item], last.get("timestamp"))
            return
    messages.append(_message([item]))
