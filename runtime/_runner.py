"""One turn: the agent call, the checkpoint coroutine, the stop event, the final save.

The order of a turn (DESIGN.md, "Life of a turn"): ``stream.started``; the checkpoint
coroutine starts beside the agent; the agent emits; in ``finally`` the stop event is
set, the checkpoint coroutine ends, the produced messages are merged, the pending
fields cleared and the session saved with its index (shielded, bounded); only then
are the terminal event and ``stream.end`` published, so that ``done`` means durable.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import orjson

from . import _events as ev
from ._events import Event
from ._json import check_json_ready
from ._session import Message, Session, validate_title
from .brokers.memory import EventLog
from .stores.abc import Store

__all__ = ["Agent", "ToolCall", "Turn", "TurnHandle", "run_turn"]

logger = logging.getLogger("runtime")

#: User code that runs one turn: ``async def agent(turn: Turn) -> None``.
Agent = Callable[["Turn"], Awaitable[None]]

# Publishing is synchronous; yield to the scheduler every this many events so that a
# tight token loop stays cancellable and fair to other turns without paying one
# scheduler round-trip per token.
_YIELD_EVERY = 64


def _now() -> float:
    return time.time()


class ToolCall:
    """A tool call in progress, from ``async with turn.tool(name, arguments) as call``.

    Set :attr:`result` (any JSON-serialisable value; a ``str`` is used as is) before
    the block ends. ``call_id`` is the OpenAI ``tool_calls[].id``. Optionally set
    :attr:`summary`, one short line for people (``"12 modules use TaskGroup"``): it
    goes out in ``tool.completed`` and terminals show it instead of the result's key
    figures; the model still gets the whole result.
    """

    __slots__ = ("arguments", "call_id", "name", "result", "summary")

    def __init__(self, name: str, arguments: dict[str, Any]) -> None:
        self.call_id = "call_" + uuid.uuid4().hex[:24]
        self.name = name
        self.arguments = arguments
        self.result: Any = None
        self.summary: str | None = None


class Turn:
    """What an agent gets for one turn: the conversation so far and the ways to emit.

    Every emitting method is a coroutine; call it from the agent's task only. After
    the turn has ended they raise :class:`RuntimeError`.

    :ivar session_id: the session.
    :ivar stream_id: this turn's stream.
    :ivar user_message: the user's text for this turn.
    :ivar history: the session's messages before this turn (a list of message dicts;
        treat as read-only).
    :ivar title: the session title when the turn started.
    :ivar metadata: per-turn JSON object the caller passed to ``start_turn`` (``{}``
        if none), e.g. what a front end sent along with the message.
    :ivar config: per-turn settings the caller passed to ``start_turn`` (``{}`` if
        none), e.g. a model name.
    """

    def __init__(
        self,
        session: Session,
        log: EventLog,
        user_message: str,
        history: list[Message],
        *,
        metadata: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        self.session_id = session.session_id
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.config: dict[str, Any] = dict(config or {})
        self.stream_id = log.stream_id
        self.user_message = user_message
        self.history = history
        self.title = session.title
        self._session = session
        self._log = log
        self._draft: list[str] = []
        self._partial: Message | None = None  # the draft as materialised in the messages
        self._open_calls: dict[str, ToolCall] = {}
        self._since_yield = 0
        self.activity = 0
        self.closed = False

    # -- internals shared with the runner ---------------------------------------------

    def _publish(self, type: str, data: dict[str, Any]) -> Event:
        """Publish at once (no await): data that is not JSON-ready raises here,
        before the caller has changed anything it would have to undo."""
        if self.closed:
            raise RuntimeError(f"turn {self.stream_id!r} has ended; cannot emit {type!r}")
        return self._log.publish(type, data)

    async def _yield_now_and_then(self) -> None:
        self._since_yield += 1
        if self._since_yield >= _YIELD_EVERY:
            self._since_yield = 0
            await anyio.lowlevel.checkpoint()

    async def _emit(self, type: str, data: dict[str, Any]) -> Event:
        event = self._publish(type, data)
        await self._yield_now_and_then()
        return event

    def _append(self, message: Message) -> None:
        self._session.messages.append(message)
        self.activity += 1

    def materialize_partial(self) -> None:
        """Write the streamed-but-unfinished assistant text into the messages as one
        ``_partial`` message, so a checkpoint persists it (hermes-webui issue #765)."""
        if not self._draft:
            return
        text = "".join(self._draft)
        if self._partial is None:
            self._partial = {
                "role": "assistant",
                "content": text,
                "_partial": True,
                "timestamp": _now(),
            }
            self._session.messages.append(self._partial)
        else:
            self._partial["content"] = text

    def _take_draft(self) -> tuple[str | None, Message | None]:
        """The draft text (or None) and its materialised dict (or None); resets both."""
        text = "".join(self._draft) if self._draft else None
        partial = self._partial
        self._draft = []
        self._partial = None
        return text, partial

    def _finish_draft(
        self, extra: dict[str, Any] | None = None, *, force: bool = False
    ) -> Message | None:
        """Turn the draft into a finished assistant message (with ``extra`` keys)."""
        text, partial = self._take_draft()
        if text is None and not force:
            return None
        if partial is not None:
            partial.pop("_partial", None)
            partial["content"] = text
            if extra:
                partial.update(extra)
            self.activity += 1
            return partial
        message: Message = {"role": "assistant", "content": text, "timestamp": _now()}
        if extra:
            message.update(extra)
        self._append(message)
        return message

    # -- the agent's API --------------------------------------------------------------

    async def token(self, text: str) -> None:
        """Stream assistant text (event ``token`` ``{"text"}``); it accumulates into the
        current assistant message until :meth:`reply` or a tool call finishes it."""
        if not isinstance(text, str):
            raise TypeError(f"token text must be str, not {type(text).__name__}")
        self._publish(ev.TOKEN, {"text": text})  # refuses text JSON cannot carry
        self._draft.append(text)
        await self._yield_now_and_then()

    async def reasoning(self, text: str) -> None:
        """Stream reasoning text (event ``reasoning`` ``{"text"}``); not stored as a message."""
        await self._emit(ev.REASONING, {"text": text})

    async def reply(self, text: str = "") -> Message | None:
        """Stream ``text`` (if any) and finish the current assistant message; emits
        ``message``. Returns the message, or ``None`` if there was no text at all."""
        if text:
            await self.token(text)
        message = self._finish_draft()
        if message is not None:
            await self._emit(ev.MESSAGE, {"message": message})
        return message

    async def add_message(self, message: Message) -> None:
        """Append any chat-completions message (dict with a ``role``); emits ``message``.

        :raises ValueError: if ``message`` is not a dict with a string ``role``.
        :raises TypeError: if a field is not JSON-ready (orjson's rules: a
            non-serialisable value, a non-string key, a lone surrogate, nesting deeper
            than 254); the message names the field and nothing is appended.
        """
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError(f"invalid message {message!r}: must be a dict with a str 'role'")
        check_json_ready(message, "message")
        await self.reply()
        message.setdefault("timestamp", _now())
        self._append(message)
        await self._emit(ev.MESSAGE, {"message": message})

    async def set_title(self, title: str) -> None:
        """Set the session title (saved with the turn); emits ``title`` ``{"title"}``.

        :raises ValueError: for an empty or non-string title, one over 200 characters or
            one with a control character.
        """
        validate_title(title)
        await self._emit(ev.TITLE, {"title": title})  # refuses text JSON cannot carry
        self._session.title = title
        self.title = title

    async def usage(self, **counts: int) -> None:
        """Report token usage (event ``usage`` with the given counts)."""
        await self._emit(ev.USAGE, dict(counts))

    @asynccontextmanager
    async def tool(
        self, name: str, arguments: dict[str, Any] | None = None
    ) -> AsyncIterator[ToolCall]:
        """Run a tool call: emits ``tool.started`` on entry and ``tool.completed`` on exit
        (``{call_id, name, result, error, duration_s}``, seconds). The assistant message
        carrying ``tool_calls`` and the ``role: "tool"`` result message are appended;
        each advances the activity counter. An exception in the block (cancellation
        included) is recorded as the tool's error and re-raised.

        :raises ValueError: for an empty name.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"invalid tool name {name!r}: must be a non-empty string")
        args = {} if arguments is None else arguments
        call = ToolCall(name, args)
        spec = {
            "id": call.call_id,
            "type": "function",
            "function": {"name": name, "arguments": orjson.dumps(args).decode()},
        }
        message = self._finish_draft({"tool_calls": [spec]}, force=True)
        assert message is not None
        await self._emit(
            ev.TOOL_STARTED, {"call_id": call.call_id, "name": name, "arguments": args}
        )
        self._open_calls[call.call_id] = call
        started = time.monotonic()
        error: str | None = None
        try:
            yield call
        except BaseException as exc:
            cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
            error = "cancelled" if cancelled else f"{type(exc).__name__}: {exc}"
            raise
        finally:
            del self._open_calls[call.call_id]
            self._complete_tool(call, error, time.monotonic() - started)

    def _complete_tool(self, call: ToolCall, error: str | None, duration: float) -> None:
        result, content = _tool_result(call.result)
        message: Message = {
            "role": "tool",
            "tool_call_id": call.call_id,
            "name": call.name,
            "content": f"error: {error}" if error is not None else content,
            "timestamp": _now(),
        }
        if error is not None:
            message["_error"] = True
        self._append(message)
        # Synchronous publish: this also runs while the block unwinds from a cancellation.
        if not self.closed:
            data = {
                "call_id": call.call_id,
                "name": call.name,
                "result": None if error is not None else result,
                "error": error,
                "duration_s": round(duration, 6),
            }
            if isinstance(call.summary, str) and call.summary:
                data["summary"] = call.summary
            self._log.publish(ev.TOOL_COMPLETED, data)


def _tool_result(result: Any) -> tuple[Any, str]:
    """A tool's result as (event value, message content), both JSON-ready whatever the
    tool returned: a value JSON cannot carry becomes its best text form, so a bad
    result never makes the turn unsaveable."""
    if isinstance(result, str):
        try:
            orjson.dumps(result)
        except TypeError:  # a lone surrogate
            result = result.encode("utf-8", "backslashreplace").decode()
        return result, result
    try:
        return result, orjson.dumps(result).decode()
    except TypeError:
        pass
    try:
        content = orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS, default=str).decode()
    except TypeError:
        content = repr(result).encode("utf-8", "backslashreplace").decode()[:10_000]
    return content, content


class TurnHandle:
    """The runtime's record of a live turn."""

    def __init__(self, session_id: str, stream_id: str, log: EventLog) -> None:
        self.session_id = session_id
        self.stream_id = stream_id
        self.log = log
        self.scope: anyio.CancelScope | None = None
        self.finished = anyio.Event()
        self.cancel_requested = False

    def cancel(self) -> None:
        """Ask the turn to stop; partial output is kept."""
        self.cancel_requested = True
        if self.scope is not None:
            self.scope.cancel()


async def _checkpoint(turn: Turn, store: Store, state: dict[str, int]) -> None:
    """One checkpoint: persist the running session and the new events, then announce it."""
    turn.materialize_partial()
    log = turn._log
    up_to = log.last_seq
    events = log.events_between(state["persisted_seq"], up_to)
    # Counted before the save: the agent goes on appending while it runs, and the
    # event must not claim messages the save never saw.
    messages = turn._session.message_count
    await store.save(turn._session, skip_index=True, events=events)
    state["persisted_seq"] = up_to
    await turn._emit(
        ev.CHECKPOINT,
        {
            "messages": messages,
            "activity": turn.activity,
            "persisted_seq": up_to,
        },
    )


async def _checkpoint_loop(
    turn: Turn, store: Store, interval: float, stop: anyio.Event, state: dict[str, int]
) -> None:
    """The checkpoint coroutine: every ``interval`` seconds, save if the activity
    counter advanced; exits at once when ``stop`` is set.

    A failed save is announced to subscribers at once (a ``checkpoint`` event with
    ``error``, ``failures`` and the unchanged ``persisted_seq``) and retried with
    exponential backoff, up to 32 intervals apart."""
    saved_activity = 0  # the activity counter starts at 0 with the turn
    failures = 0
    while not stop.is_set():
        with anyio.move_on_after(interval * (1 << min(failures, 5))):
            await stop.wait()
        if stop.is_set():
            return
        if turn.activity == saved_activity:
            continue
        saved_activity = turn.activity
        try:
            await _checkpoint(turn, store, state)
            failures = 0
        except Exception as exc:
            failures += 1
            saved_activity = -1  # retried at the next tick, whatever the agent does
            logger.error(
                "checkpoint of session %s failed (%d in a row)",
                turn.session_id,
                failures,
                exc_info=exc,
            )
            turn._publish(
                ev.CHECKPOINT,
                {
                    "error": f"{type(exc).__name__}: {exc}",
                    "failures": failures,
                    "retry_in_s": interval * (1 << min(failures, 5)),
                    "persisted_seq": state["persisted_seq"],
                },
            )


def _outcome_messages(turn: Turn, outcome: str, error: BaseException | None) -> list[Message]:
    """Messages that record how the turn ended, after the partial output is kept."""
    if outcome == "done":
        turn._finish_draft()
        return []
    # Keep the whole draft as one _partial message: a checkpoint may have materialised
    # an earlier prefix of it, which must now carry the text streamed since.
    turn.materialize_partial()
    turn._take_draft()
    marker: Message
    if outcome == "cancelled":
        marker = {
            "role": "assistant",
            "content": "Turn cancelled.",
            "type": "cancelled",
            "_cancelled": True,
            "timestamp": _now(),
        }
    else:
        marker = {
            "role": "assistant",
            "content": f"Error: {type(error).__name__}: {error}",
            "_error": True,
            "type": "error",
            "error_type": type(error).__name__,
            "timestamp": _now(),
        }
    return [marker]


async def _final_save(
    turn: Turn,
    store: Store,
    outcome: str,
    error: BaseException | None,
    state: dict[str, int],
    save_timeout: float,
) -> None:
    """Merge, clear the pending fields, save with the index, then publish the end."""
    session = turn._session
    for message in _outcome_messages(turn, outcome, error):
        session.messages.append(message)
    session.active_stream_id = None
    session.pending_user_message = None
    session.pending_started_at = None
    log = turn._log
    seq = log.last_seq
    terminal: tuple[str, dict[str, Any]]
    if outcome == "done":
        terminal = (ev.DONE, {"messages": session.message_count})
    elif outcome == "cancelled":
        terminal = (ev.CANCELLED, {"reason": "cancelled"})
    else:
        terminal = (
            ev.ERROR,
            {"type": "agent_error", "error_type": type(error).__name__, "message": str(error)},
        )
    ts = _now()
    tail = [
        Event(seq + 1, turn.stream_id, turn.session_id, terminal[0], terminal[1], ts),
        Event(seq + 2, turn.stream_id, turn.session_id, ev.STREAM_END, {"outcome": outcome}, ts),
    ]
    events = log.events_between(state["persisted_seq"], seq) + tail
    saved = False
    with anyio.move_on_after(save_timeout, shield=True):
        try:
            await store.save(session, events=events)
            saved = True
        except Exception as exc:
            logger.exception("final save of session %s failed", turn.session_id)
            tail[0] = Event(
                seq + 1,
                turn.stream_id,
                turn.session_id,
                ev.ERROR,
                {"type": "save_failed", "message": str(exc)},
                ts,
            )
    if not saved and tail[0].type != ev.ERROR:
        logger.error("final save of session %s timed out after %ss", turn.session_id, save_timeout)
        tail[0] = Event(
            seq + 1,
            turn.stream_id,
            turn.session_id,
            ev.ERROR,
            {"type": "save_timeout", "message": f"final save exceeded {save_timeout}s"},
            ts,
        )
    turn.closed = True
    for event in tail:
        log.append(event)


async def run_turn(
    agent: Agent,
    turn: Turn,
    handle: TurnHandle,
    store: Store,
    *,
    checkpoint_interval: float,
    final_save_timeout: float,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run one turn to its end. Started with ``TaskGroup.start``: returns control to
    the caller once ``stream.started`` is published.

    A cancellation from outside the turn (runtime shutdown) still gets the shielded
    final save and is then re-raised.
    """
    state = {"persisted_seq": turn._log.last_seq}  # stream.started was saved by start_turn
    stop = anyio.Event()
    outcome = "done"
    error: BaseException | None = None
    try:
        with anyio.CancelScope() as scope:
            handle.scope = scope
            if handle.cancel_requested:
                scope.cancel()
            task_status.started()
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_checkpoint_loop, turn, store, checkpoint_interval, stop, state)
                    try:
                        await agent(turn)
                    except Exception as exc:
                        error = exc
                        outcome = "error"
                        logger.error(
                            "agent failed in session %s: %r", turn.session_id, exc, exc_info=exc
                        )
                    finally:
                        stop.set()
            finally:
                stop.set()
        if scope.cancelled_caught:
            outcome = "cancelled"
    except anyio.get_cancelled_exc_class():
        try:
            await _final_save(turn, store, "cancelled", None, state, final_save_timeout)
        finally:
            handle.finished.set()
        raise
    try:
        await _final_save(turn, store, outcome, error, state, final_save_timeout)
    finally:
        handle.finished.set()


def interval_ok(value: float, name: str) -> float:
    """:raises ValueError: unless ``value`` is a finite number of seconds > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value > 0)
    ):
        raise ValueError(f"invalid {name} {value!r}: must be a finite number of seconds > 0")
    return float(value)
