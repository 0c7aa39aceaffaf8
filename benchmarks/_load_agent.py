"""The agent of ``python -m benchmarks.load_sse``: the user message is JSON
``{"tokens": N, "bytes": B, "interval": S}``; it streams N tokens of B bytes, one
every S seconds on a fixed schedule, then reports how far it fell behind that
schedule (``usage`` event ``{"lag_ms": …}``: the event loop was too busy to wake it)
and replies."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio


async def agent(turn: Any) -> None:
    params = json.loads(turn.user_message)
    tokens, size, interval = params["tokens"], params["bytes"], params["interval"]
    text = ("x" * (size - 1)) + " "
    start = time.monotonic()
    worst = 0.0
    for i in range(tokens):
        due = start + i * interval
        now = time.monotonic()
        worst = max(worst, now - due)
        if due > now:
            await anyio.sleep(due - now)
        await turn.token(text)
    await turn.usage(lag_ms=int(worst * 1000))
    await turn.reply("done.")
