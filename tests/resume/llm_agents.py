"""An ``openai_chat`` agent for the resume test with the chat-completions stand-in
(``tests/llm/chat_standin.py``, a stand-in for a paid API): one non-idempotent tool that
takes effect (a line in ``RESUME_SIDE_EFFECTS``), then hangs until the test kills the
process."""

from __future__ import annotations

import os

import anyio
import anyio.to_thread

from runtime.agents import function_tool, openai_chat


def _append(text: str) -> None:
    fd = os.open(os.environ["RESUME_SIDE_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, text.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


async def transfer(amount: int) -> str:
    """Move money (not idempotent).

    :param amount: how much.
    """
    await anyio.to_thread.run_sync(_append, f"transfer {amount}")
    await anyio.sleep(3600)
    return "transferred"


agent = openai_chat(
    model="standin-1",
    base_url=os.environ.get("OPENAI_BASE_URL"),
    api_key="test",
    tools=[function_tool(transfer)],
)
