"""Per-user isolation: a host's authentication hook names the principal of each request,
and every session belongs to the principal that created it.

The owner is stored in the session's metadata under :data:`OWNER_KEY`
(``"runtime.owner"``), so every store keeps it without a schema change and the listing
index carries it. A request for another principal's session or stream gets the same
404 as a session that does not exist, so ids cannot be probed. Sessions without an
owner (made by the CLI or by code embedding the runtime) are served to nobody while a
hook is set.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request

from .._exceptions import InvalidSessionId, SessionNotFound, StreamNotFound
from .._runtime import Runtime
from .._session import Session, validate_session_id
from ..stores.abc import SessionPage, decode_cursor, encode_cursor
from ._errors import ApiError

__all__ = ["OWNER_KEY", "Authenticate", "Owners"]

#: The metadata key holding the principal that created a session.
OWNER_KEY = "runtime.owner"

#: ``request -> principal`` (a non-empty ``str``), or ``None`` to answer 401; sync or async.
Authenticate = Callable[[Request], "Awaitable[str | None] | str | None"]

_SCAN_PAGE = 200  # sessions read per store page while filtering a listing


class Owners:
    """The authentication hook and the ownership checks of every ``/api`` route.

    :param runtime: the runtime whose sessions are checked.
    :param authenticate: see :data:`Authenticate`.
    """

    def __init__(self, runtime: Runtime, authenticate: Authenticate) -> None:
        self.runtime = runtime
        self.authenticate = authenticate

    async def principal(self, request: Request) -> str:
        """The request's principal, from the hook.

        :raises ApiError: 401 ``unauthorized`` if the hook returns ``None``.
        :raises TypeError: if the hook returns something else than ``str`` or ``None``.
        """
        result: Any = self.authenticate(request)
        if inspect.isawaitable(result):
            result = await result
        if result is None:
            raise ApiError(
                401,
                "unauthorized",
                "the request is not authenticated",
                headers={"WWW-Authenticate": 'Bearer realm="runtime"'},
            )
        if not isinstance(result, str) or not result:
            raise TypeError(
                f"invalid principal {result!r} from the authentication hook: "
                "must be a non-empty str, or None for 401"
            )
        return result

    async def check(self, request: Request, principal: str) -> None:
        """404 unless the session (or the stream's session) the path names belongs to
        ``principal``. An id that is not valid is left to the route (400)."""
        params = request.path_params
        if "session_id" in params:
            sid = params["session_id"]
            try:
                validate_session_id(sid)
            except InvalidSessionId:
                return
            if not await self._owns(sid, principal):
                raise SessionNotFound(f"no session {sid!r}")
        elif "stream_id" in params:
            stream_id = params["stream_id"]
            try:
                sid = self.runtime.stream_session(stream_id)
            except StreamNotFound:
                return
            if not await self._owns(sid, principal):
                raise StreamNotFound(f"no live, retained or persisted stream {stream_id!r}")

    async def _owns(self, session_id: str, principal: str) -> bool:
        try:
            meta = await self.runtime.store.load_metadata(session_id)
        except SessionNotFound:
            return True  # the route answers 404 itself
        return owner_of(meta) == principal

    async def page(self, principal: str, limit: int, cursor: str | None) -> SessionPage:
        """A page of ``principal``'s sessions, newest first; cursors as the store's.

        :raises InvalidCursor: for a cursor the store did not hand out.
        """
        if cursor is not None:
            decode_cursor(cursor)  # a bad cursor is a 400 before any read
        found: list[Session] = []
        while True:
            page = await self.runtime.list_sessions(limit=_SCAN_PAGE, cursor=cursor)
            for s in page.sessions:
                if owner_of(s) != principal:
                    continue
                found.append(s)
                if len(found) == limit:
                    return SessionPage(found, encode_cursor(s.updated_at, s.session_id))
            if page.next_cursor is None:
                return SessionPage(found, None)
            cursor = page.next_cursor


def owner_of(session: Session) -> str | None:
    """The principal that created ``session`` (``None`` if none is recorded)."""
    owner = session.metadata.get(OWNER_KEY) if isinstance(session.metadata, dict) else None
    return owner if isinstance(owner, str) else None
