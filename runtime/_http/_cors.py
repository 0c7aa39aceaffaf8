"""Cross-origin requests (CORS, the WHATWG Fetch standard) from configured origins,
answered by Starlette's ``CORSMiddleware``: a preflight ``OPTIONS`` gets 200 with the
allowed methods and headers instead of reaching the routes (which would answer 405)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

__all__ = ["check_origins", "cors_middleware"]

_ORIGIN = re.compile(r"https?://[^\s/?#]+")

#: Response headers a cross-origin page may read (the AI SDK checks the stream marker).
EXPOSED = ["Location", "x-vercel-ai-ui-message-stream"]


def check_origins(origins: Sequence[str]) -> list[str]:
    """The origins as a list, each ``*`` or ``scheme://host[:port]`` without a path.

    :raises ValueError: naming the first bad origin and the rule.
    """
    if isinstance(origins, str):
        raise ValueError(f"invalid cors_origins {origins!r}: must be a list of origins")
    out = []
    for origin in origins:
        if not isinstance(origin, str) or (
            origin != "*" and _ORIGIN.fullmatch(origin.rstrip("/")) is None
        ):
            raise ValueError(
                f"invalid CORS origin {origin!r}: must be '*' or scheme://host[:port] "
                "(http or https, no path)"
            )
        out.append(origin.rstrip("/"))
    return out


def cors_middleware(origins: list[str]) -> list[Middleware]:
    """The middleware list for ``Starlette(middleware=...)``: empty without origins.
    Credentials (cookies) are allowed only for named origins, never with ``*``."""
    if not origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            allow_credentials="*" not in origins,
            expose_headers=EXPOSED,
            max_age=600,
        )
    ]
