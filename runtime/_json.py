"""JSON encoding shared by the event log, the SSE writer and the stores."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["check_json_ready", "kept"]


def check_json_ready(value: dict[str, Any], what: str) -> None:
    """Check that ``value`` (a dict) encodes as plain JSON, as every store writes it.

    :param what: how the caller names ``value`` in the error ("message", "metadata").
    :raises TypeError: naming the first field that cannot be encoded and why (orjson's
        rules: a non-serialisable value, a non-string key, a lone surrogate, nesting
        deeper than 254 levels).
    """
    try:
        orjson.dumps(value)
    except TypeError as exc:
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"invalid {what} key {key!r}: JSON keys must be strings") from exc
            try:
                orjson.dumps(item)
            except TypeError as inner:
                raise TypeError(f"invalid {what} field {key!r}: not JSON-ready ({inner})") from exc
        raise TypeError(f"invalid {what}: not JSON-ready ({exc})") from exc


def kept(encoded: bytes) -> bytes:
    """A right-sized copy of orjson output that is kept beyond the call (``bytes``).

    orjson 3.12+ returns ``bytes`` that keep its whole output buffer: at least 4 KiB,
    16 KiB for a 1.2 KB message. Kept per cached session or per event, that is
    megabytes per thousand; and 100,000 of them fragment the C heap until every
    further encoding costs ~5 µs instead of ~0.3 µs (docs/benchmarks.md, W4). The copy
    holds the JSON's own length.
    """
    return memoryview(encoded).tobytes()
