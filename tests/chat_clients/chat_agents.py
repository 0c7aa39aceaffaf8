"""An agent for the chat-protocol tests (AI SDK, AG-UI), served by a real
``runtime serve tests/chat_clients/chat_agents.py:agent`` process.

The user message says what to do: ``tokens=N delay=S tool_every=K`` as in
``tests/http/sse_agents.py``, plus ``reason=1`` (stream reasoning first), ``fail=1``
(a failing tool call, then the agent raises) and ``echo=1`` (reply with the turn's
``metadata`` and ``config`` as JSON, proving they reach the agent) and ``md=1`` (end with
a Markdown report that also carries HTML a sanitizer must remove) and ``history=1``
(start with ``h<N> t<M>``: the N messages of history the turn sees, and M, a count of the
turns this process ran, so that a regenerated answer differs from the one it replaces).
"""

from __future__ import annotations

import json

import anyio

from runtime import Turn

#: A Markdown answer with a heading, emphasis, code, a list, a table, and two attempts
#: to run script that the page's sanitizer must drop.
MARKDOWN_REPORT = (
    "\n\n# Findings\n\n**Bold claim** with `inline code`.\n\n- first item\n- second item\n\n"
    "| module | uses |\n|---|---|\n| asyncio | 12 |\n\n"
    '<img src="x" onerror="window.__xss = 1"> <script>window.__xss = 2</script>\n'
)


_turns: list[str] = []  # the stream ids of the turns this process ran


def parse(message: str) -> dict[str, float]:
    """``key=value`` pairs of the message; unknown words are ignored."""
    out: dict[str, float] = {}
    for word in message.split():
        key, sep, value = word.partition("=")
        if sep:
            out[key] = float(value)
    return out


async def agent(turn: Turn) -> None:
    """Act as the user message says (see the module docstring)."""
    spec = parse(turn.user_message)
    _turns.append(turn.stream_id)
    if spec.get("history"):
        await turn.token(f"h{len(turn.history)} t{len(_turns)} ")
    if spec.get("reason"):
        await turn.reasoning("thinking ")
        await turn.reasoning("hard")
    tool_every = int(spec.get("tool_every", 0))
    for i in range(1, int(spec.get("tokens", 3)) + 1):
        await turn.token(f"w{i:03d} ")
        if tool_every and i % tool_every == 0:
            async with turn.tool("count", {"i": i}) as call:
                call.result = {"i": i, "square": i * i}
        if spec.get("delay"):
            await anyio.sleep(spec["delay"])
    if spec.get("fail"):
        try:
            async with turn.tool("explode", {"why": "test"}):
                raise ValueError("tool blew up")
        except ValueError:
            pass
        raise RuntimeError("agent failed on purpose")
    if spec.get("md"):
        await turn.token(MARKDOWN_REPORT)
    if spec.get("echo"):
        await turn.token(json.dumps({"metadata": turn.metadata, "config": turn.config}))
    await turn.reply()
