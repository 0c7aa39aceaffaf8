"""Agents of the resume tests, loaded by real ``runtime`` processes (``runtime run
tests/resume/agents.py:steps``, ``runtime serve …``). No model: the steps are
deterministic, so a resumed run can be compared with an uninterrupted one.

Environment:

* ``RESUME_SIDE_EFFECTS`` -- the file every tool execution appends one line to
  (``<call_id>``, ``O_APPEND`` + ``fsync``): what really ran.
* ``RESUME_STEPS`` -- tool calls of :func:`steps` (default 30).
* ``RESUME_STEP_DELAY`` -- seconds between two steps that ran (default 0.2).
"""

from __future__ import annotations

import os

import anyio
import anyio.to_thread

from runtime import Tool, Turn


def _append(call_id: str) -> None:
    fd = os.open(os.environ["RESUME_SIDE_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, call_id.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


async def _square(step: int) -> dict[str, int]:
    await anyio.to_thread.run_sync(_append, f"step-{step}")
    return {"step": step, "square": step * step}


SQUARE = Tool(_square, name="square")  # not idempotent: at most once


async def steps(turn: Turn) -> None:
    """``RESUME_STEPS`` calls of a non-idempotent tool, each under the id ``step-<n>``,
    then a report streamed line by line. Steps done before a resume are not run again."""
    n = int(os.environ.get("RESUME_STEPS", "30"))
    delay = float(os.environ.get("RESUME_STEP_DELAY", "0.2"))
    results = []
    ran = False
    for i in range(1, n + 1):
        if ran and delay:
            await anyio.sleep(delay)
        call = await turn.call_tool(SQUARE, {"step": i}, call_id=f"step-{i}")
        ran = not call.replayed
        results.append(call.result)
    known = [r for r in results if "square" in r]  # not "outcome unknown" results
    for i, r in enumerate(results, 1):
        await turn.token(f"step {i}: {r.get('square', r.get('status'))}\n")
    await turn.reply(f"total: {sum(r['square'] for r in known)}")


async def _charge(amount: int) -> dict[str, str]:
    """Takes its effect, then hangs: the test kills the process while it waits."""
    await anyio.to_thread.run_sync(_append, "charge")
    await anyio.sleep(3600)
    return {"charged": str(amount)}


CHARGE = Tool(_charge, name="charge")  # not idempotent, no reconcile


async def charge(turn: Turn) -> None:
    """One non-idempotent call that hangs after its effect; the reply says what the
    call's result was (``outcome_unknown`` after a resume) and the attempt."""
    call = await turn.call_tool(CHARGE, {"amount": 42}, call_id="charge-1")
    status = call.result.get("status", "ok") if isinstance(call.result, dict) else "ok"
    await turn.reply(f"charge: {status}; attempt {turn.resumed}")


async def draft(turn: Turn) -> None:
    """``RESUME_TOKENS`` tokens (default 40), ``RESUME_TOKEN_DELAY`` seconds apart (default
    0.05), then the reply they make: a turn killed mid-stream leaves a checkpointed draft,
    and a resumed attempt streams it again from the start."""
    n = int(os.environ.get("RESUME_TOKENS", "40"))
    delay = float(os.environ.get("RESUME_TOKEN_DELAY", "0.05"))
    for i in range(n):
        await turn.token(f"t{i} ")
        await anyio.sleep(delay)
    await turn.reply()


async def draft_then_quiet(turn: Turn) -> None:
    """:func:`draft` on its first attempt; a resumed attempt ends at once, without text."""
    if not turn.resumed:
        await draft(turn)
