"""Agents for the CLI tests (tests/test_cli.py), loaded by ``runtime run tests/cli_agents.py:NAME``.

Not a test module: pytest does not collect it (no ``test_`` prefix).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from runtime import Turn


async def slow_agent(turn: Turn) -> None:
    """Streams ``tok<i> `` every 0.1 s for 30 s, so a test can interrupt it mid-stream."""
    for i in range(300):
        await turn.token(f"tok{i} ")
        await anyio.sleep(0.1)
    await turn.reply("finished")


async def failing_agent(turn: Turn) -> None:
    """Streams one token, then raises ``RuntimeError("boom in agent")``."""
    await turn.token("before the failure ")
    raise RuntimeError("boom in agent")


def sync_agent(turn: Turn) -> None:
    """A plain function: not an agent (the CLI must refuse it)."""


async def chatty_agent(turn: Turn) -> None:
    """Streams 3,000 numbered tokens (about 300 KB of ``--json`` lines, more than a
    pipe holds) and ends with ``the end``."""
    for i in range(3000):
        await turn.token(f"token number {i:05d} ")
    await turn.reply("the end")
