"""JSON encoding shared by the event log, the SSE writer and the stores."""

from __future__ import annotations

__all__ = ["kept"]


def kept(encoded: bytes) -> bytes:
    """A right-sized copy of orjson output that is kept beyond the call (``bytes``).

    orjson 3.12+ returns ``bytes`` that keep its whole output buffer: at least 4 KiB,
    16 KiB for a 1.2 KB message. Kept per cached session or per event, that is
    megabytes per thousand; and 100,000 of them fragment the C heap until every
    further encoding costs ~5 µs instead of ~0.3 µs (docs/benchmarks.md, W4). The copy
    holds the JSON's own length.
    """
    return memoryview(encoded).tobytes()
