"""The ``Host`` header check: a server without a token must not be drivable from any
web page through DNS rebinding (a page on ``evil.example`` whose name resolves to
127.0.0.1 reaches the server with ``Host: evil.example``; the browser's same-origin
rule does not stop it, so the server must).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ._errors import ApiError

__all__ = ["LOOPBACK_HOSTS", "HostCheck", "allowed_hosts_from"]

#: The names a browser uses for this machine: the default allow-list.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def allowed_hosts_from(value: Sequence[str] | None) -> tuple[str, ...]:
    """The allow-list: ``value``, else ``$RUNTIME_ALLOWED_HOSTS`` (comma-separated),
    else :data:`LOOPBACK_HOSTS`. Names are compared lower case; ``*`` allows any host,
    ``*.example.com`` any subdomain of it.

    :raises ValueError: for an empty name or an empty list.
    """
    if value is None:
        env = os.environ.get("RUNTIME_ALLOWED_HOSTS", "").strip()
        value = [h.strip() for h in env.split(",")] if env else list(LOOPBACK_HOSTS)
    if isinstance(value, str):
        raise ValueError(f"invalid allowed_hosts {value!r}: must be a list of host names")
    hosts = tuple(str(h).strip().lower() for h in value)
    if not hosts or any(not h for h in hosts):
        raise ValueError(f"invalid allowed_hosts {list(value)!r}: names must be non-empty")
    return hosts


def _host_name(header: str) -> str:
    """``example.com`` of ``example.com:8000``; ``[::1]`` of ``[::1]:8000``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.split(":", 1)[0]


class HostCheck:
    """ASGI middleware answering 400 ``invalid_host`` (JSON) to a request whose
    ``Host`` is not allowed.

    :param app: the application behind it.
    :param allowed: host names, as :func:`allowed_hosts_from` returns them.
    """

    def __init__(self, app: ASGIApp, allowed: Sequence[str]) -> None:
        self.app = app
        self.any = "*" in allowed
        self.exact = frozenset(h for h in allowed if not h.startswith("*."))
        self.suffixes = tuple(h[1:] for h in allowed if h.startswith("*."))

    def allows(self, host: str) -> bool:
        """Whether a ``Host`` header value is allowed."""
        name = _host_name(host)
        return self.any or name in self.exact or name.endswith(self.suffixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self.any:
            host = Headers(scope=scope).get("host", "")
            if not self.allows(host):
                error = ApiError(
                    400,
                    "invalid_host",
                    f"invalid Host header {host!r}: this server answers only to "
                    f"{', '.join(sorted(self.exact | {'*' + s for s in self.suffixes}))} "
                    "(configure allowed_hosts or --allowed-host)",
                )
                await error.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)
