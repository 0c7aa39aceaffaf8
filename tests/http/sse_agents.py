"""An agent for the HTTP tests that run a real server in a subprocess
(``runtime serve tests/http/sse_agents.py:scripted``).

The user message says what to do, e.g. ``tokens=40 delay=0.05 tool_every=5``:
stream ``tokens`` tokens ``w001 ``, ``w002 `` … sleeping ``delay`` seconds after each,
and run a ``count`` tool after every ``tool_every``-th token (tool completions advance
the activity counter, so checkpoints persist the stream's events while it runs).
"""

from __future__ import annotations

import anyio

from runtime import Turn


def token_text(i: int) -> str:
    """The ``i``-th token (1-based) the agent streams."""
    return f"w{i:03d} "


def parse(message: str) -> dict[str, float]:
    """``key=value`` pairs of the message; unknown words are ignored."""
    out: dict[str, float] = {}
    for word in message.split():
        key, sep, value = word.partition("=")
        if sep:
            out[key] = float(value)
    return out


async def scripted(turn: Turn) -> None:
    """Stream numbered tokens as the user message says (see the module docstring)."""
    spec = parse(turn.user_message)
    count = int(spec.get("tokens", 5))
    delay = spec.get("delay", 0.0)
    tool_every = int(spec.get("tool_every", 0))
    for i in range(1, count + 1):
        await turn.token(token_text(i))
        if tool_every and i % tool_every == 0:
            async with turn.tool("count", {"i": i}) as call:
                call.result = {"i": i}
        if delay:
            await anyio.sleep(delay)
    await turn.reply()
