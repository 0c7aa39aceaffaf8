"""A MemoryStore that pauses a load, for tests of what another writer does between a
load and the save after it (the window a slow disk or a database round trip opens)."""

from __future__ import annotations

import anyio

from runtime import MemoryStore, Session


class PausingStore(MemoryStore):
    """A MemoryStore whose next full load, once armed with ``(reached, go)``, sets
    ``reached`` and waits for ``go`` before it returns."""

    def __init__(self) -> None:
        super().__init__()
        self.armed: tuple[anyio.Event, anyio.Event] | None = None

    async def _load(self, session_id: str) -> Session:
        session = await super()._load(session_id)
        if self.armed is not None:
            reached, go = self.armed
            self.armed = None
            reached.set()
            await go.wait()
        return session
