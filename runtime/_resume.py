"""Durable resume: the turn record kept in the session, and rebuilding an interrupted
turn's transcript so the agent continues it.

The record (``session.metadata["runtime.resume"]``) is written with the claim that
starts a turn and with the checkpoints that extend its seq reservation, and removed by
the turn's final save: a session that still holds one names a turn that never ended.
It lives in ``metadata`` (like ``runtime.owner``), so every store keeps it with no
schema change, in the same write as the checkpoint it belongs to.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import _events as ev
from ._events import Event
from ._json import check_json_ready
from ._session import Message, Session
from .stores.abc import ToolCallRecord

__all__ = [
    "OUTCOME_UNKNOWN",
    "RESUME_KEY",
    "SEQ_SLACK",
    "SEQ_WINDOW",
    "ResumePlan",
    "disregard_after",
    "new_record",
    "outcome_unknown",
    "prepare_resume",
    "record_of",
    "suspended",
    "suspensions",
]

#: The metadata key of the turn record.
RESUME_KEY = "runtime.resume"
#: Seqs reserved beyond the last durable one by each extension of the reservation.
SEQ_WINDOW = 4096
#: The turn extends its reservation once it is this close to it: room for the events
#: published synchronously (a tool's completion, a checkpoint) between two checks.
SEQ_SLACK = 64
#: Seqs after a dead stream's reservation that a reader may have been shown as a made-up
#: ``error`` ``{"type": "interrupted"}`` and ``stream.end``; a resume starts after them.
DEAD_END_SEQS = 2

#: The ``status`` of the result a call gets when its outcome is unknown.
OUTCOME_UNKNOWN = "outcome_unknown"

_DRAFT_TYPES = frozenset({ev.TOKEN, ev.REASONING, ev.USAGE, ev.CHECKPOINT})


def new_record(
    stream_id: str,
    attempt: int,
    seq_reserved: int,
    config: dict[str, Any] | None,
    *,
    suspended: int = 0,
) -> dict[str, Any]:
    """``{stream_id, attempt, seq_reserved[, suspended][, config]}``; ``config`` only if
    JSON-ready (the store redacts credential keys in it, as in all metadata);
    ``suspended`` (see :func:`suspensions`) only once the turn has been suspended."""
    record: dict[str, Any] = {
        "stream_id": stream_id,
        "attempt": attempt,
        "seq_reserved": seq_reserved,
    }
    if suspended:
        record["suspended"] = suspended
    if config:
        try:
            check_json_ready(config, "config")
        except TypeError:
            pass
        else:
            record["config"] = config
    return record


def record_of(session: Session, stream_id: str | None = None) -> dict[str, Any] | None:
    """The session's turn record if it is well formed (and names ``stream_id``)."""
    record = session.metadata.get(RESUME_KEY)
    if not isinstance(record, dict):
        return None
    sid, attempt, reserved = (record.get(k) for k in ("stream_id", "attempt", "seq_reserved"))
    if not isinstance(sid, str) or (stream_id is not None and sid != stream_id):
        return None
    for value in (attempt, reserved):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return None
    return record


def suspensions(record: dict[str, Any]) -> int:
    """How many of the turn's runs ended by a suspension (a graceful shutdown that kept
    the turn for a resume) rather than by a crash: resumes after them are not counted
    against ``max_resume_attempts``. 0 when the record holds no valid count."""
    n = record.get("suspended", 0)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        return 0
    return min(n, int(record["attempt"]) + 1)


def suspended(record: dict[str, Any] | None) -> bool:
    """Whether the turn's last run ended by a suspension and no run has claimed it
    since: its process saved it whole and gave its lease up, so it may be resumed at
    once (no lease to wait out)."""
    return record is not None and isinstance(record.get("suspended_at"), int | float)


def with_record(session: Session, record: dict[str, Any] | None) -> None:
    """Set (or, with ``None``, remove) the turn record, as a new metadata dict."""
    metadata = {k: v for k, v in session.metadata.items() if k != RESUME_KEY}
    if record is not None:
        metadata[RESUME_KEY] = record
    session.metadata = metadata


def outcome_unknown(record: ToolCallRecord | None, call_id: str, name: str) -> dict[str, Any]:
    """The result a tool call gets when it started before the process stopped, left no
    result, and is not run again: ``{"status": "outcome_unknown", "call_id", "tool",
    "started_at", "message"}`` (``started_at`` in epoch seconds, ``None`` if the ledger
    holds no intent). A model reads it as the call's result and can decide what to do
    (check the effect, ask the user, call again)."""
    return {
        "status": OUTCOME_UNKNOWN,
        "call_id": call_id,
        "tool": name,
        "started_at": None if record is None else record.started_at,
        "message": (
            "The process running this tool call stopped before its result was recorded, "
            "so it may or may not have taken effect. It was not run again."
        ),
    }


def disregard_after(events: list[Event]) -> int:
    """The seq after which the durable events are only the unfinished assistant draft
    (tokens, reasoning, usage, checkpoints since the last finished message or tool
    call): what a resumed turn streams again."""
    last = 0
    for event in reversed(events):
        if event.type not in _DRAFT_TYPES:
            return event.seq
        last = event.seq - 1
    return last


@dataclass
class ResumePlan:
    """What :func:`prepare_resume` found, for the resumed :class:`~runtime.Turn`.

    :ivar user_message: the turn's user message.
    :ivar results: call id -> ``(result, error)`` of the turn's calls that completed.
    :ivar pending: the trailing assistant message whose calls are not all answered
        (``None`` if there is none): the calls the agent settles first.
    :ivar slot: the empty ``_partial`` message standing where the dropped draft was
        (the list never shrinks; the resumed turn's next assistant message takes it).
    :ivar republish: ``(call_id, name, arguments, result, error, finished)`` of calls the
        durable event log lacks (they happened after the last checkpoint).
    """

    user_message: str
    results: dict[str, tuple[Any, str | None]] = field(default_factory=dict)
    pending: Message | None = None
    slot: Message | None = None
    republish: list[tuple[str, str, Any, Any, str | None, bool]] = field(default_factory=list)
    durable_completed: set[str] = field(default_factory=set)


def _arguments_text(arguments: object) -> str:
    if isinstance(arguments, str):
        return arguments
    return orjson.dumps(arguments).decode()


def _parsed(arguments: object) -> Any:
    if isinstance(arguments, str):
        try:
            value = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return arguments
        return value if isinstance(value, dict) else arguments
    return arguments


def _content_value(content: object) -> Any:
    """A tool message's content back as the result value (its JSON, or the text)."""
    if not isinstance(content, str):
        return content
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return content


def _tool_message(call_id: str, name: str, result: Any, error: str | None) -> Message:
    from ._runner import _tool_result

    message: Message = {"role": "tool", "tool_call_id": call_id, "name": name}
    if error is not None:
        message["content"] = f"Error: {error}"
        message["_error"] = True
    else:
        message["content"] = _tool_result(result)[1]
    message["timestamp"] = time.time()
    return message


def prepare_resume(
    session: Session,
    stream_id: str,
    events: list[Event],
    records: list[ToolCallRecord],
    *,
    final: bool = False,
) -> ResumePlan:
    """Rebuild the interrupted turn ``stream_id`` in ``session.messages`` so its agent
    can continue it; returns what the resumed turn needs.

    From the checkpointed transcript: the turn's user message (added if the crash came
    before a checkpoint had it; its ``_recovered`` flag removed), its finished assistant
    messages and tool calls. Dropped: a trailing ``interrupted`` marker of a repair and
    the ``_partial`` draft (it is streamed again). Folded in from the tool ledger: calls
    that started after the last checkpoint, grouped as they ran (a call that started
    before the previous one finished joins its group), with their results when they
    have one. The message list never gets shorter than it was (a shorter save leaves a
    backup that ``recover()`` would restore): the dropped draft's place is kept as an
    empty ``_partial`` slot, unless a pending group must stay last; a repaired turn whose
    marker and draft are both dropped may still lose one place.

    :param final: the turn is not resumed but ended (``resume_exhausted``): keep the
        draft, fold the ledger in after it, answer the calls left open with "outcome
        unknown" results, and put the repair's marker (if any) back last.
    """
    messages = session.messages
    before = len(messages)
    started = next((e for e in events if e.type == ev.STREAM_STARTED), None)
    text = session.pending_user_message
    if text is None and started is not None:
        text = started.data.get("user_message")
    user_at = next(
        (
            i
            for i in range(len(messages) - 1, -1, -1)
            if messages[i].get("role") == "user" and messages[i].get("stream_id") == stream_id
        ),
        None,
    )
    if user_at is None:
        messages.append(
            {
                "role": "user",
                "content": text or "",
                "timestamp": session.pending_started_at or time.time(),
                "stream_id": stream_id,
            }
        )
        user_at = len(messages) - 1
    user = messages[user_at]
    user.pop("_recovered", None)
    plan = ResumePlan(user_message=str(user.get("content") or text or ""))
    # the repair's marker, then the unfinished draft
    marker = None
    if messages[-1].get("type") == "interrupted" and len(messages) - 1 > user_at:
        marker = messages.pop()
    if messages[-1].get("_partial") and len(messages) - 1 > user_at and not final:
        messages.pop()

    completed_events = {
        e.data.get("call_id"): e.data for e in events if e.type == ev.TOOL_COMPLETED
    }
    plan.durable_completed = {k for k in completed_events if isinstance(k, str)}
    by_id = {r.call_id: r for r in records}
    answered: set[str] = set()
    in_transcript: dict[str, str] = {}
    for m in messages[user_at + 1 :]:
        for spec in m.get("tool_calls") or ():
            in_transcript[spec.get("id")] = spec.get("function", {}).get("name", "")
        if m.get("role") == "tool" and isinstance(m.get("tool_call_id"), str):
            answered.add(m["tool_call_id"])
            record = by_id.get(m["tool_call_id"])
            if record is not None and record.state != "started":
                plan.results[m["tool_call_id"]] = (record.result, record.error)
            elif m.get("_error"):
                error = str(m.get("content") or "")
                plan.results[m["tool_call_id"]] = (None, error.removeprefix("Error: "))
            else:
                plan.results[m["tool_call_id"]] = (_content_value(m.get("content")), None)

    def known(call_id: str) -> tuple[Any, str | None] | None:
        record = by_id.get(call_id)
        if record is not None and record.state != "started":
            return record.result, record.error
        data = completed_events.get(call_id)
        if data is not None:
            return data.get("result"), data.get("error")
        return None

    # The open group: the last assistant message whose calls are not all answered.
    group: Message | None = None
    last = messages[-1] if len(messages) - 1 > user_at else None
    if last is not None and last.get("tool_calls"):
        ids = [spec.get("id") for spec in last["tool_calls"]]
        if any(i not in answered for i in ids):
            group = last

    def close_if_complete() -> None:
        nonlocal group
        if group is None:
            return
        ids = [(s.get("id"), s.get("function", {}).get("name", "")) for s in group["tool_calls"]]
        results = [known(i) for i, _ in ids]
        if any(r is None for r in results):
            return
        for (call_id, name), res in zip(ids, results, strict=True):
            assert res is not None
            plan.results[call_id] = res
            messages.append(_tool_message(call_id, name, res[0], res[1]))
        group = None

    def group_end() -> float:
        """When the open group's last call finished (inf while one has no result)."""
        assert group is not None
        end = 0.0
        for spec in group["tool_calls"]:
            record = by_id.get(spec.get("id"))
            if record is None or record.finished_at is None:
                return float("inf")
            end = max(end, record.finished_at)
        return end

    close_if_complete()
    for record in records:  # start order
        if record.call_id in in_transcript:
            continue
        spec = {
            "id": record.call_id,
            "type": "function",
            "function": {"name": record.name, "arguments": _arguments_text(record.arguments)},
        }
        if group is not None and record.started_at < group_end():
            group["tool_calls"].append(spec)
        else:
            close_if_complete()
            if group is not None:  # still open: a later call cannot come after it
                group["tool_calls"].append(spec)
            else:
                group = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [spec],
                    "timestamp": record.started_at,
                }
                messages.append(group)
        in_transcript[record.call_id] = record.name
        finished = record.state != "started"
        plan.republish.append(
            (
                record.call_id,
                record.name,
                _parsed(record.arguments),
                record.result,
                record.error,
                finished,
            )
        )
    close_if_complete()
    # A call in the checkpointed transcript had its tool.started saved in the same
    # write as its message; only the folded calls' events may have been lost.
    if final:
        if group is not None:
            for spec in group["tool_calls"]:
                call_id, name = spec.get("id"), spec.get("function", {}).get("name", "")
                res = known(call_id)
                if res is None:
                    res = (outcome_unknown(by_id.get(call_id), call_id, name), None)
                plan.results[call_id] = res
                messages.append(_tool_message(call_id, name, res[0], res[1]))
        if marker is not None:
            messages.append(marker)
        return plan
    plan.pending = group
    if group is None and len(messages) < before:
        plan.slot = {"role": "assistant", "content": "", "_partial": True, "timestamp": time.time()}
        messages.append(plan.slot)
    return plan
