"""The message shapes of BENCHMARKS.md, used identically for every system.

A history of N messages cycles through a user message (~200 bytes of text), an
assistant message (~400 bytes) and a tool result (~1 KiB of text with newlines
and quotes, ``role: "tool"`` and ``tool_call_id``): about 600 bytes of JSON per
message on average. The message appended in W1 is a ~1.1 KiB tool result.

Texts are pseudo-random words from a fixed seed, so every run and every system
sees byte-identical messages.
"""

from __future__ import annotations

import random
from typing import Any

import orjson

__all__ = [
    "appended_message",
    "history",
    "json_size",
    "message",
]

_WORDS = (
    "the",
    "session",
    "stream",
    "event",
    "checkpoint",
    "journal",
    "snapshot",
    "agent",
    "turn",
    "token",
    "tool",
    "result",
    "module",
    "import",
    "async",
    "await",
    "task",
    "group",
    "cancel",
    "scope",
    "subscriber",
    "replay",
    "durable",
    "fsync",
    "rename",
    "index",
    "page",
    "cursor",
    "backup",
    "recover",
    "store",
    "memory",
    "file",
    "loop",
    "queue",
    "batch",
    "latency",
    "throughput",
    "search",
    "grep",
    "TaskGroup",
    "anyio",
    "asyncio",
    "trio",
    "httpx",
    "starlette",
    "uvicorn",
    "reply",
)

_BASE_TS = 1_763_700_000.0


def _text(rng: random.Random, nbytes: int) -> str:
    parts: list[str] = []
    size = 0
    while size < nbytes:
        word = rng.choice(_WORDS)
        parts.append(word)
        size += len(word) + 1
    return " ".join(parts)[:nbytes]


def _tool_text(rng: random.Random, nbytes: int) -> str:
    lines: list[str] = []
    size = 0
    while size < nbytes:
        path = f"src/{rng.choice(_WORDS)}/{rng.choice(_WORDS)}_{rng.randrange(100)}.py"
        line = (
            f"{path}:{rng.randrange(1, 900)}:    async with anyio.create_task_group() as tg:"
            f'  # "{rng.choice(_WORDS)} {rng.choice(_WORDS)}"'
        )
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)[:nbytes]


def message(i: int) -> dict[str, Any]:
    """Message number ``i`` of a history (``i >= 0``): user, assistant, tool, user, …

    :raises ValueError: if ``i`` is negative.
    """
    if i < 0:
        raise ValueError(f"invalid message index {i!r}: must be >= 0")
    rng = random.Random(i)
    kind = i % 3
    ts = _BASE_TS + i
    if kind == 0:
        return {"role": "user", "content": _text(rng, 200), "timestamp": ts}
    if kind == 1:
        return {"role": "assistant", "content": _text(rng, 400), "timestamp": ts}
    return {
        "role": "tool",
        "tool_call_id": f"call_{i:08d}",
        "content": _tool_text(rng, 1024),
        "timestamp": ts,
    }


def history(n: int) -> list[dict[str, Any]]:
    """The first ``n`` messages of the cycle (a new list of new dicts).

    :raises ValueError: if ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"invalid history length {n!r}: must be >= 0")
    return [message(i) for i in range(n)]


def appended_message(rep: int) -> dict[str, Any]:
    """The W1 appended message: a ~1.1 KiB tool result, distinct per ``rep``."""
    rng = random.Random(1_000_000 + rep)
    return {
        "role": "tool",
        "tool_call_id": f"call_append_{rep:06d}",
        "content": _tool_text(rng, 1126),
        "timestamp": _BASE_TS + 1_000_000 + rep,
    }


def json_size(obj: object) -> int:
    """Bytes of ``obj`` as compact JSON (orjson)."""
    return len(orjson.dumps(obj))
