"""Crash torture of durable resume: ``python -m runtime.torture --resume``.

Each trial starts a child (``python -m runtime.torture._resume child``) that runs one
turn of random non-idempotent tool calls and streamed text on a real FileStore, and
kills it with SIGKILL (at a random instant, or at the N-th call of a file I/O step).
Then it starts the child again with ``Runtime(resume="auto")``, which resumes the turn
by itself; that child is killed again at a random instant in some trials, until one
run ends. The tools append their call id to a file (``O_APPEND`` + ``fsync``) when they
take effect, so what really ran is known. Then it checks:

* ``unfinished`` — the turn neither completed (its reply is there) nor ended with
  ``resume_exhausted``, or the session still names a stream or keeps a turn record;
* ``tool_twice`` — a tool call took effect more than once;
* ``lost`` — a tool result or event acknowledged durable (by a ``checkpoint`` event's
  ``persisted_seq``) in any run is missing or different in the end;
* ``seq_reused`` — two runs sent different events under one seq;
* ``false_result`` — a call that never took effect has a real result in the
  transcript, or the prompt is not there exactly once;
* ``child_failed`` — a child exited with an error instead of finishing or dying.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import orjson

from .._exceptions import SessionNotFound
from .._runner import Turn
from .._runtime import Runtime
from .._tools import Tool
from ..stores.files import FileStore
from ._check import Violation
from ._trial import KILL_STEPS, Totals, run_chains, run_killed

__all__ = ["RESUME_CATEGORIES", "ResumeSummary", "run_resume_trials"]

RESUME_CATEGORIES = (
    "unfinished",
    "tool_twice",
    "lost",
    "seq_reused",
    "false_result",
    "child_failed",
)
#: Resumes a turn may have in the torture; the kills of one trial may exceed it.
MAX_RESUMES = 3
_CHILD_TIMEOUT = 60.0
_PROMPT = "resume torture "


# -- the child ---------------------------------------------------------------------------


def _say(record: dict[str, Any]) -> None:
    sys.stdout.buffer.write(orjson.dumps(record) + b"\n")
    sys.stdout.buffer.flush()


def _effect(path: str, call_id: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, call_id.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def _script(seed: int) -> list[tuple[str, Any]]:
    """The turn of a trial: 1-8 tool calls (some in parallel groups) with streamed text
    between them, then a reply."""
    rng = random.Random(seed)
    steps: list[tuple[str, Any]] = []
    for i in range(rng.randint(1, 8)):
        steps += [("token", f"t{i}.{j} ") for j in range(rng.randint(0, 30))]
        width = 1 if rng.random() < 0.7 else rng.randint(2, 3)
        steps.append(("tools", [(f"c{i}-{k}", rng.uniform(0, 0.05)) for k in range(width)]))
    steps += [("token", f"w{j} ") for j in range(rng.randint(0, 40))]
    steps.append(("reply", "end."))
    return steps


def _agent(effects: str) -> Callable[[Turn], Any]:
    async def act(call_id: str, seconds: float) -> dict[str, str]:
        await anyio.to_thread.run_sync(_effect, effects, call_id)
        await anyio.sleep(seconds)
        return {"done": call_id}

    tool = Tool(act, name="act")  # not idempotent: at most once

    async def agent(turn: Turn) -> None:
        pending: list[str] = []  # the text before the next tool calls
        for kind, arg in _script(int(turn.user_message.removeprefix(_PROMPT))):
            if kind == "token":
                pending.append(arg)
            elif kind == "tools":
                if turn.resumed_call(arg[0][0]) is None:  # else said before the resume
                    for text in pending:
                        await turn.token(text)
                pending.clear()
                calls = [
                    await turn.start_tool("act", {"call_id": c, "seconds": s}, call_id=c)
                    for c, s in arg
                ]
                async with anyio.create_task_group() as tg:
                    for call in calls:
                        tg.start_soon(turn.run_tool, call, tool)
            else:
                for text in pending:
                    await turn.token(text)
                await turn.reply(arg)

    return agent


async def _child(root: str, seed: int, effects: str, session_id: str | None, run: int) -> None:
    rng = random.Random(seed * 31 + run)
    rt = Runtime(
        FileStore(root),
        _agent(effects),
        checkpoint_interval=rng.choice((0.005, 0.01, 0.02, 0.05)),
        resume="auto",
        max_resume_attempts=MAX_RESUMES,
        resume_backoff=0.01,
    )
    async with rt:
        if session_id is None:
            session_id = rt.new_session(title=f"resume torture {seed}").session_id
            _say({"kind": "session", "session_id": session_id})
            stream_id = await rt.start_turn(session_id, f"{_PROMPT}{seed}")
            async for event in rt.events(stream_id):
                _say({"kind": "event", "event": event.to_dict()})
        else:
            while True:
                try:
                    status = await rt.session_status(session_id)
                except SessionNotFound:  # killed before the turn's first save
                    break
                stream_id = status["active_stream_id"]
                if stream_id is None and status["interrupted"] is None:
                    break
                if stream_id is not None and rt.is_live(stream_id):
                    async for event in rt.events(stream_id):
                        _say({"kind": "event", "event": event.to_dict()})
                else:
                    await anyio.sleep(0.01)
    _say({"kind": "exit"})


# -- the parent --------------------------------------------------------------------------


@dataclass
class _Run:
    code: int
    exited: bool
    session_id: str | None
    events: list[dict[str, Any]]
    error: str


def _start(
    root: Path, seed: int, effects: Path, session_id: str | None, run: int, spec: str
) -> _Run:
    args = ["-m", "runtime.torture._resume", "child", str(root), str(seed)]
    args += [str(effects), session_id or "-", str(run)]
    rng = random.Random(seed * 7 + run)
    delay: float | None = None
    if not spec and (run == 0 or rng.random() < 0.35):
        delay = rng.uniform(0.0, 0.6)  # counted from the child's first output
    out, code, err = run_killed(args, spec, delay, from_output=True)
    session_id, events, exited = None, [], False
    for line in out.splitlines():
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # a line torn by the kill
        if record["kind"] == "session":
            session_id = record["session_id"]
        elif record["kind"] == "event":
            events.append(record["event"])
        elif record["kind"] == "exit":
            exited = True
    return _Run(code, exited, session_id, events, err)


@dataclass
class ResumeTrial:
    """How one trial went: its kills, whether the turn completed, what broke."""

    trial: int
    seed: int
    kills: int
    outcome: str  # "done", "resume_exhausted", "none" (no session), or "failed"
    violations: list[Violation]
    seconds: float


@dataclass
class ResumeSummary(Totals):
    """Totals over a ``--resume`` run."""

    results: list[ResumeTrial] = field(default_factory=list)

    def outcomes(self) -> Counter[str]:
        return Counter(r.outcome for r in self.results)

    def kills(self) -> int:
        return sum(r.kills for r in self.results)


def _first_spec(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return ""
    step = rng.choice(sorted(KILL_STEPS))
    return f"{rng.choice(['kill', 'kill-after'])}:{step}:{rng.randint(1, KILL_STEPS[step])}"


def resume_trial(root: Path, trial: int, seed: int) -> ResumeTrial:
    """Run, kill, resume until a run ends, then check (see the module docstring)."""
    started = time.monotonic()
    effects = root / f"effects-{trial}"
    rng = random.Random(seed)
    runs = [_start(root, seed, effects, None, 0, _first_spec(rng))]
    session_id = runs[0].session_id
    violations: list[Violation] = []

    def failed(run: _Run) -> bool:
        if run.code not in (0, -signal.SIGKILL) or (run.code == 0 and not run.exited):
            tail = run.error.strip().splitlines()[-3:]
            violations.append(Violation("child_failed", f"trial {trial}: exit {run.code}: {tail}"))
            return True
        return False

    if failed(runs[0]) or session_id is None:
        outcome = "failed" if violations else "none"
        return ResumeTrial(trial, seed, 1, outcome, violations, time.monotonic() - started)
    while runs[-1].code == -signal.SIGKILL and len(runs) < 12:
        runs.append(_start(root, seed, effects, session_id, len(runs), ""))
        if failed(runs[-1]):
            break
    kills = sum(1 for r in runs if r.code == -signal.SIGKILL)
    ran = Counter(effects.read_text().split()) if effects.exists() else Counter()
    outcome, found = anyio.run(_check, root, session_id, ran, runs, trial)
    violations += found
    return ResumeTrial(trial, seed, kills, outcome, violations, time.monotonic() - started)


async def _check(
    root: Path, session_id: str, ran: Counter[str], runs: list[_Run], trial: int
) -> tuple[str, list[Violation]]:
    out: list[Violation] = []
    store = FileStore(root, read_only=True)
    async with store:
        try:
            session = await store.load(session_id)
        except SessionNotFound:
            if any(e["type"] == "stream.started" for r in runs for e in r.events):
                return "lost", [Violation("lost", f"trial {trial}: the started turn is gone")]
            return "none", out  # killed before the turn's first save: nothing acknowledged
    messages = session.messages
    twice = sorted(c for c, n in ran.items() if n > 1)
    if twice:
        out.append(Violation("tool_twice", f"trial {trial}: {twice} took effect twice"))
    last = messages[-1] if messages else {}
    if last.get("type") == "resume_exhausted":
        outcome = "resume_exhausted"
    elif (
        last.get("role") == "assistant"
        and str(last.get("content", "")).endswith("end.")
        and not last.get("_partial")
    ):
        outcome = "done"
    else:
        outcome = "unfinished"
        out.append(Violation("unfinished", f"trial {trial}: ends with {str(last)[:200]}"))
    if session.active_stream_id is not None or "runtime.resume" in session.metadata:
        out.append(Violation("unfinished", f"trial {trial}: the session still names its turn"))
    prompts = [m for m in messages if m.get("role") == "user"]
    if len(prompts) != 1:
        out.append(Violation("false_result", f"trial {trial}: {len(prompts)} user messages"))
    results = {m.get("tool_call_id"): m.get("content") for m in messages if m.get("role") == "tool"}
    for call_id, content in results.items():
        real = isinstance(content, str) and content == orjson.dumps({"done": call_id}).decode()
        if real and call_id not in ran:
            out.append(
                Violation("false_result", f"trial {trial}: {call_id} has a result, never ran")
            )
    # acknowledged durable in some run: must be in the end state, unchanged
    sent: dict[int, tuple[str, Any]] = {}
    for run in runs:
        acked = max(
            [e["data"].get("persisted_seq", 0) for e in run.events if e["type"] == "checkpoint"]
            + [e["seq"] for e in run.events if e["type"] == "done"]
            + [0]
        )
        for e in run.events:
            key = (e["type"], e["data"])
            if e["seq"] in sent and sent[e["seq"]] != key:
                out.append(Violation("seq_reused", f"trial {trial}: seq {e['seq']} sent twice"))
            sent.setdefault(e["seq"], key)
            if e["type"] == "tool.completed" and e["seq"] <= acked:
                call_id = e["data"]["call_id"]
                if call_id not in results:
                    out.append(Violation("lost", f"trial {trial}: result of {call_id} lost"))
    return outcome, out


def _chain(base: Path, trials: list[int], seed: int, report: Callable[[ResumeTrial], None]) -> None:
    root = base / f"chain-{trials[0]}"
    root.mkdir(parents=True, exist_ok=True)
    for trial in trials:
        report(resume_trial(root, trial, seed * 1_000_003 + trial))
    shutil.rmtree(root, ignore_errors=True)


def run_resume_trials(
    trials: int,
    *,
    seed: int = 0,
    chain: int = 10,
    jobs: int = 1,
    report: Callable[[ResumeTrial], None] | None = None,
) -> ResumeSummary:
    """Run ``trials`` resume trials, ``chain`` per store root, ``jobs`` at a time.

    :raises ValueError: for ``trials``, ``chain`` or ``jobs`` < 1.
    """
    summary = ResumeSummary()
    run_chains(summary, _chain, trials, seed, chain, jobs, None, report, "runtime-torture-resume-")
    return summary


def main(argv: list[str] | None = None) -> None:
    """``python -m runtime.torture._resume child ROOT SEED EFFECTS SESSION|- RUN``."""
    parser = argparse.ArgumentParser(prog="python -m runtime.torture._resume")
    parser.add_argument("mode", choices=["child"])
    parser.add_argument("root")
    parser.add_argument("seed", type=int)
    parser.add_argument("effects")
    parser.add_argument("session")
    parser.add_argument("run", type=int)
    args = parser.parse_args(argv)
    session = None if args.session == "-" else args.session
    anyio.run(_child, args.root, args.seed, args.effects, session, args.run)


if __name__ == "__main__":
    main()
