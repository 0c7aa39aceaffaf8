"""The smallest possible agent: it streams the user's words back, one ``token`` event per word,
and finishes the assistant message with ``turn.reply``.

Run it::

    runtime run examples/echo_agent.py:agent "hello there"
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime import Turn


async def agent(turn: Turn) -> None:
    """Echo ``turn.user_message`` word by word (whitespace kept as it was)."""
    words = turn.user_message.split(" ")
    for word in words[:-1]:
        await turn.token(word + " ")
    await turn.reply(words[-1])
