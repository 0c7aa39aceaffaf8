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


async def chat_agent(turn: Turn) -> None:
    """Answers with a Markdown report: the message, how many messages came before, and
    the turn's number. ``slow`` streams for 30 s (to be cancelled); ``fail`` raises."""
    if turn.user_message == "fail":
        await turn.token("about to fail ")
        raise RuntimeError("boom in chat agent")
    if turn.user_message == "slow":
        for i in range(300):
            await turn.token(f"slow{i} ")
            await anyio.sleep(0.1)
    async with turn.tool("lookup", {"query": turn.user_message, "limit": 5}) as call:
        call.result = {"matches": 3, "files": ["a.py", "b.py", "c.py"], "text": "x" * 500}
    async with turn.tool("count_words", {"text": turn.user_message}) as call:
        call.result = len(turn.user_message.split())
        call.summary = f"{call.result} words counted"
    await turn.reply(
        f"# Report\n\nYou said **{turn.user_message}**.\n\n"
        f"- history: {len(turn.history)} messages\n- tools: 2\n"
    )


async def chatty_agent(turn: Turn) -> None:
    """Streams 3,000 numbered tokens (about 300 KB of ``--json`` lines, more than a
    pipe holds) and ends with ``the end``."""
    for i in range(3000):
        await turn.token(f"token number {i:05d} ")
    await turn.reply("the end")
