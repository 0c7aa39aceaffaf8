"""The process the torture kills: runs random turns on a FileStore and prints, one JSON
line each (flushed, so a SIGKILL loses none it wrote), what it was told:

* ``{"kind": "intent", "session_id", "prompt"}`` before ``start_turn`` is called;
* ``{"kind": "event", "event": {...}}`` for every event of every stream it started;
* ``{"kind": "delete", "session_id"}`` before ``delete_session``, ``"deleted"`` after;
* ``{"kind": "exit"}`` when it finished without being killed.

Its random choices come from ``--seed``; FileStore reads the kill step (if any) from
``RUNTIME_FILESTORE_FAULT`` (see :mod:`runtime.stores.faults`).
"""

from __future__ import annotations

import argparse
import random
import sys
from typing import Any

import anyio
import orjson

from .._runner import Turn
from .._runtime import Runtime
from ..stores.files import FileStore

__all__ = ["main", "plan_script"]

Script = list[tuple[str, Any]]


def _say(record: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(record) + b"\n")
    sys.stdout.buffer.flush()


def plan_script(rng: random.Random) -> Script:
    """A random turn: bursts of tokens, 0-6 tool calls of random duration, a reply;
    sometimes an extra message or a new title."""
    steps: Script = []
    for i in range(rng.randint(0, 6)):
        steps += [("token", f"step {i} ") for _ in range(rng.randint(0, 8))]
        steps.append(("tool", (f"tool{i}", rng.uniform(0, 0.03))))
        if rng.random() < 0.15:
            steps.append(("message", f"note {i}"))
        if rng.random() < 0.1:
            steps.append(("title", f"title {rng.randint(0, 999)}"))
    steps += [("token", f"w{j} ") for j in range(rng.randint(0, 20))]
    steps.append(("reply", "end."))
    return steps


class _Agent:
    """Plays the script registered for each prompt."""

    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}

    async def __call__(self, turn: Turn) -> None:
        for kind, arg in self.scripts[turn.user_message]:
            if kind == "token":
                await turn.token(arg)
            elif kind == "tool":
                name, seconds = arg
                async with turn.tool(name, {"n": name}) as call:
                    await anyio.sleep(seconds)
                    call.result = {"tool": name, "turn": turn.user_message}
            elif kind == "message":
                await turn.add_message({"role": "assistant", "content": arg, "torture_note": True})
            elif kind == "title":
                await turn.set_title(arg)
            else:
                await turn.reply(arg)


async def _turn(rt: Runtime, agent: _Agent, sid: str, prompt: str, script: Script) -> None:
    agent.scripts[prompt] = script
    _say({"kind": "intent", "session_id": sid, "prompt": prompt})
    stream_id = await rt.start_turn(sid, prompt)
    async for event in rt.events(stream_id):
        _say({"kind": "event", "event": event.to_dict()})


async def run(root: str, seed: int) -> None:
    """One child run (see the module docstring)."""
    rng = random.Random(seed)
    agent = _Agent()
    interval = rng.choice((0.005, 0.01, 0.02, 0.05))
    async with Runtime(FileStore(root), agent, checkpoint_interval=interval) as rt:
        existing = [s.session_id for s in (await rt.list_sessions(limit=50)).sessions]
        if existing and rng.random() < 0.1:
            victim = existing.pop(rng.randrange(len(existing)))
            _say({"kind": "delete", "session_id": victim})
            await rt.delete_session(victim)
            _say({"kind": "deleted", "session_id": victim})
        rng.shuffle(existing)
        sids = existing[: rng.randint(1, 3)]
        while len(sids) < 1 or (len(sids) < 3 and rng.random() < 0.3):
            sids.append(rt.new_session(title=f"torture {seed}").session_id)
        for r in range(rng.randint(1, 3)):
            chosen = rng.sample(sids, k=rng.randint(1, len(sids)))
            async with anyio.create_task_group() as tg:
                for k, sid in enumerate(chosen):
                    prompt = f"prompt {seed}-{r}-{k}"
                    tg.start_soon(_turn, rt, agent, sid, prompt, plan_script(rng))
    _say({"kind": "exit"})


def main(argv: list[str] | None = None) -> None:
    """``python -m runtime.torture._child --root DIR --seed S``."""
    parser = argparse.ArgumentParser(prog="python -m runtime.torture._child")
    parser.add_argument("--root", required=True)
    parser.add_argument("--seed", type=int, required=True)
    args = parser.parse_args(argv)
    anyio.run(run, args.root, args.seed)


if __name__ == "__main__":
    main()
