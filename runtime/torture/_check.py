"""What must hold after a crash: the invariants the torture checks after each kill.

Read from what the killed child printed (:mod:`runtime.torture._child`) and from the
store reopened by a new :class:`~runtime.Runtime` (recovery, stale repair):

* ``corrupt`` — recovery or a load fails, a listed session cannot be loaded, a
  replayed stream has a gap or does not end with ``stream.end``;
* ``lost`` — a message durable at an earlier check is gone or changed, an event up
  to a checkpoint's ``persisted_seq`` (or of a turn that reported ``done``) is
  missing: its tool result, its message, its streamed text, its replayed event; a
  started turn's prompt is missing; an acknowledged delete came back;
* ``duplicates`` — a prompt, a tool result or an interrupted marker appears twice;
* ``markers`` — a killed turn whose stream replays as interrupted lacks its one
  interrupted marker (last of its messages), or a finished turn has one;
* ``new_turn`` — a new turn on a recovered session does not end with ``done`` and
  its messages;
* ``child_failed`` — the child exited with an error instead of finishing or dying.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import orjson

from .._exceptions import SessionNotFound
from .._runtime import Runtime

__all__ = ["CATEGORIES", "Observed", "Violation", "check_store"]

CATEGORIES = ("corrupt", "lost", "duplicates", "markers", "new_turn", "child_failed")

Messages = list[dict[str, Any]]


@dataclass(frozen=True)
class Violation:
    """One broken invariant: its category and what was seen."""

    category: str
    detail: str


@dataclass
class _Stream:
    session_id: str
    prompt: str | None = None
    events: dict[int, dict[str, Any]] = field(default_factory=dict)

    @property
    def persisted(self) -> int:
        """The highest seq acknowledged durable: a checkpoint's ``persisted_seq``, or
        the ``done`` event (published only after the final save is durable)."""
        acked = 0
        for seq, e in self.events.items():
            if e["type"] == "checkpoint":
                acked = max(acked, e["data"]["persisted_seq"])
            elif e["type"] == "done":
                acked = max(acked, seq)
        return acked

    @property
    def finished(self) -> bool:
        return any(e["type"] == "done" for e in self.events.values())


@dataclass
class Observed:
    """What the child reported before it died."""

    intents: list[tuple[str, str]] = field(default_factory=list)
    streams: dict[str, _Stream] = field(default_factory=dict)
    delete_intents: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    exited: bool = False

    @classmethod
    def parse(cls, output: bytes) -> Observed:
        """Parse the child's stdout; a torn last line (killed mid-write) is ignored."""
        obs = cls()
        for line in output.split(b"\n"):
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            kind = rec["kind"]
            if kind == "intent":
                obs.intents.append((rec["session_id"], rec["prompt"]))
            elif kind == "event":
                e = rec["event"]
                s = obs.streams.setdefault(e["stream_id"], _Stream(e["session_id"]))
                s.events[e["seq"]] = e
                if e["type"] == "stream.started":
                    s.prompt = e["data"]["user_message"]
            elif kind == "delete":
                obs.delete_intents.add(rec["session_id"])
            elif kind == "deleted":
                obs.deleted.add(rec["session_id"])
            elif kind == "exit":
                obs.exited = True
        return obs


def _segment(messages: Messages, prompt: str) -> Messages:
    """The messages of the turn whose prompt is ``prompt``: from it to the next user
    message (empty if the prompt is not there)."""
    for i, m in enumerate(messages):
        if m.get("role") == "user" and m.get("content") == prompt:
            end = i + 1
            while end < len(messages) and messages[end].get("role") != "user":
                end += 1
            return messages[i:end]
    return []


def _text(segment: Messages) -> str:
    """The assistant text streamed in a turn, in order (markers and notes excluded)."""
    return "".join(
        m.get("content") or ""
        for m in segment[1:]
        if m.get("role") == "assistant" and "type" not in m and not m.get("torture_note")
    )


class _Checker:
    def __init__(self, rt: Runtime, trial: int) -> None:
        self.rt = rt
        self.trial = trial
        self.violations: list[Violation] = []

    def bad(self, category: str, detail: str) -> None:
        self.violations.append(Violation(category, f"trial {self.trial}: {detail}"))

    async def load(self, sid: str) -> Messages | None:
        try:
            return (await self.rt.get_session(sid)).messages
        except SessionNotFound:
            return None
        except Exception as exc:
            self.bad("corrupt", f"session {sid} does not load: {exc!r}")
            return None

    async def replay(self, stream_id: str) -> Messages | None:
        out: Messages = []
        try:
            with anyio.fail_after(30):
                async for event in self.rt.events(stream_id):
                    out.append(orjson.loads(event.json()))
        except Exception as exc:
            self.bad("corrupt", f"stream {stream_id} does not replay: {exc!r}")
            return None
        seqs = [e["seq"] for e in out]
        if seqs != list(range(1, len(seqs) + 1)) or not out or out[-1]["type"] != "stream.end":
            self.bad("corrupt", f"stream {stream_id} replays seqs {seqs} (a gap or no end)")
            return None
        return out

    def acknowledged(self, sid: str, s: _Stream, messages: Messages) -> None:
        """Everything the stream acknowledged is in the session, and its prompt once."""
        assert s.prompt is not None
        count = sum(1 for m in messages if m.get("role") == "user" and m["content"] == s.prompt)
        if count != 1:
            kind = "lost" if count == 0 else "duplicates"
            self.bad(kind, f"session {sid}: prompt {s.prompt!r} stored {count} times")
            return
        segment = _segment(messages, s.prompt)
        acked = s.persisted
        ids = {m.get("tool_call_id") for m in segment if m.get("role") == "tool"}
        contents = [m.get("content") for m in segment]
        tokens = ""
        for seq in sorted(s.events):
            e = s.events[seq]
            if seq > acked:
                break
            if e["type"] == "tool.completed" and e["data"]["call_id"] not in ids:
                self.bad("lost", f"session {sid}: tool result {e['data']['call_id']} (seq {seq})")
            elif e["type"] == "message" and e["data"]["message"].get("content") not in contents:
                self.bad("lost", f"session {sid}: the message of event seq {seq}")
            elif e["type"] == "token":
                tokens += e["data"]["text"]
        if not _text(segment).startswith(tokens):
            self.bad("lost", f"session {sid}: text streamed up to seq {acked} is not stored")

    async def ending(self, stream_id: str, s: _Stream, messages: Messages) -> None:
        """The latest stream of a session replays its acknowledged events, and its
        ending matches the transcript (interrupted <=> exactly one marker, the last)."""
        replayed = await self.replay(stream_id)
        if replayed is None:
            return
        by_seq = {e["seq"]: e for e in replayed}
        for seq in range(1, s.persisted + 1):
            seen, back = s.events.get(seq), by_seq.get(seq)
            if seen is None:
                continue
            if back is None or (back["type"], back["data"]) != (seen["type"], seen["data"]):
                self.bad("lost", f"stream {stream_id}: acknowledged event seq {seq} not replayed")
                break
        end = replayed[-2] if len(replayed) > 1 else replayed[-1]
        markers = [
            m
            for m in messages
            if m.get("type") == "interrupted" and m.get("stream_id") == stream_id
        ]
        segment = _segment(messages, s.prompt or "")
        if end["type"] == "error" and end["data"].get("type") == "interrupted":
            if s.finished:
                self.bad("markers", f"stream {stream_id} reported done but replays interrupted")
            elif len(markers) != 1 or segment[-1:] != markers:
                self.bad("markers", f"stream {stream_id}: {len(markers)} interrupted markers")
        elif end["type"] == "done":
            if markers:
                self.bad("markers", f"stream {stream_id} finished but has an interrupted marker")
        else:
            self.bad("markers", f"stream {stream_id} ended with {end['type']} {end['data']}")

    def duplicates(self, sid: str, messages: Messages) -> None:
        keys = Counter[str]()
        for m in messages:
            if m.get("role") == "user":
                keys[f"prompt {m['content']!r}"] += 1
            elif m.get("role") == "tool":
                keys[f"tool result {m['tool_call_id']}"] += 1
            elif m.get("type") == "interrupted":
                keys[f"marker of {m.get('stream_id')}"] += 1
        for key, n in keys.items():
            if n > 1 and not key.startswith("prompt 'check "):
                self.bad("duplicates", f"session {sid}: {key} x{n}")

    async def new_turn(self, sid: str) -> Messages | None:
        prompt = f"check {self.trial}"
        try:
            with anyio.fail_after(30):
                stream_id = await self.rt.start_turn(sid, prompt)
                types = [e.type async for e in self.rt.events(stream_id)]
            messages = (await self.rt.get_session(sid)).messages
        except Exception as exc:
            self.bad("new_turn", f"session {sid}: {exc!r}")
            return None
        if types[-2:] != ["done", "stream.end"] or messages[-2].get("content") != prompt:
            self.bad("new_turn", f"session {sid}: events end {types[-2:]}, {messages[-2:]}")
            return None
        return messages


async def _listed(rt: Runtime) -> set[str]:
    listed: set[str] = set()
    cursor: str | None = None
    while True:
        page = await rt.list_sessions(limit=100, cursor=cursor)
        listed |= {s.session_id for s in page.sessions}
        if (cursor := page.next_cursor) is None:
            return listed


async def check_store(
    rt: Runtime, root: Path, obs: Observed, baselines: dict[str, Messages], trial: int
) -> list[Violation]:
    """Check the reopened store against what the child reported and against the
    messages each session held after the previous check (``baselines``: session id →
    messages, updated in place after this check's new turn on each session)."""
    c = _Checker(rt, trial)
    known = set(baselines) | {sid for sid, _ in obs.intents}
    files = {p.name[:-5] for p in (root / "sessions").glob("*.json") if p.name[0] not in "_."}
    listed = await _listed(rt)
    latest: dict[str, str] = {}  # session -> its latest stream, if the child saw it start
    last_prompt = {sid: prompt for sid, prompt in obs.intents}
    for stream_id, s in obs.streams.items():
        if s.prompt is not None and s.prompt == last_prompt.get(s.session_id):
            latest[s.session_id] = stream_id
    for sid in sorted(known | files | listed):
        messages = await c.load(sid)
        if sid in obs.deleted:
            if messages is not None:
                c.bad("lost", f"deleted session {sid} came back")
            baselines.pop(sid, None)
            continue
        if messages is None:
            started = any(s.session_id == sid for s in obs.streams.values())
            if sid in listed or started or (sid in baselines and sid not in obs.delete_intents):
                c.bad("lost", f"session {sid} is gone")
            baselines.pop(sid, None)
            continue
        base = baselines.get(sid, [])
        if messages[: len(base)] != base:
            c.bad("lost", f"session {sid}: messages durable at the last check changed")
        c.duplicates(sid, messages)
        for s in obs.streams.values():
            if s.session_id == sid and s.prompt is not None:
                c.acknowledged(sid, s, messages)
        if sid in latest:
            await c.ending(latest[sid], obs.streams[latest[sid]], messages)
        after = await c.new_turn(sid)
        if after is not None:
            baselines[sid] = after
    return c.violations
