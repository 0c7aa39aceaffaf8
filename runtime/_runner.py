"""One turn: the agent call, the checkpoint coroutine, the stop event, the final save.

The order of a turn (DESIGN.md, "Life of a turn"): ``stream.started``; the checkpoint
coroutine starts beside the agent; the agent emits; in ``finally`` the stop event is
set, the checkpoint coroutine ends, the produced messages are merged, the pending
fields cleared and the session saved with its index (shielded, bounded); only then
are the terminal event and ``stream.end`` published, so that ``done`` means durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

import anyio
import anyio.lowlevel
import orjson

from . import _events as ev
from ._events import Event, EventRecords, event_records
from ._exceptions import LeaseLost, WriteConflict
from ._json import check_json_ready
from ._resume import (
    RESUME_KEY,
    SEQ_SLACK,
    SEQ_WINDOW,
    ResumePlan,
    outcome_unknown,
    record_of,
    suspensions,
    with_record,
)
from ._session import Message, Session, validate_title
from ._timer import Latch, Mutex, StopEvent, Wakeups, asyncio_loop
from ._tools import LedgerTool, call_maybe_async
from ._transcript import model_messages as to_model_messages
from .brokers.abc import StreamLog
from .stores.abc import Lease, SaveDelta, Store, ToolCallRecord

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
    """One tool call of a turn, from :meth:`Turn.tool` or :meth:`Turn.start_tool`.

    Inside ``async with turn.tool(...) as call`` set :attr:`result` before the block
    ends; a call from :meth:`Turn.start_tool` ends with :meth:`finish` or :meth:`fail`.

    :ivar call_id: the OpenAI ``tool_calls[].id``: the model's id when the agent passed
        one, otherwise ``"call_"`` and 24 hex digits.
    :ivar name: the tool's name.
    :ivar arguments: the arguments as a dict, or the raw string the model sent when it
        is not a JSON object (the transcript keeps that string as it was).
    :ivar result: the tool's result: a ``str`` is the tool message's content as is, any
        other value is sent as its JSON.
    :ivar error: ``None``, or the error text once the call failed
        (``"ValueError: ..."``, ``"cancelled"``).
    :ivar exception: the exception that failed the call, if any.
    :ivar summary: optional, one short line for people (``"12 modules use TaskGroup"``):
        it goes out in ``tool.completed`` and terminals show it instead of the result's
        key figures; the model still gets the whole result.
    :ivar replayed: True if the result was not produced now: it came from before the
        turn was resumed (the transcript or the tool ledger), from the tool's
        ``reconcile`` hook, or is an "outcome unknown" result.
    """

    __slots__ = (
        "_done",
        "_group",
        "_started",
        "_turn",
        "arguments",
        "call_id",
        "error",
        "exception",
        "name",
        "replayed",
        "result",
        "summary",
    )

    def __init__(
        self, turn: Turn, name: str, arguments: dict[str, Any] | str, call_id: str
    ) -> None:
        self.call_id = call_id
        self.name = name
        self.arguments = arguments
        self.result: Any = None
        self.error: str | None = None
        self.summary: str | None = None
        self.exception: BaseException | None = None
        self._turn = turn
        self._group: _ToolGroup | None = None
        self._started = time.monotonic()
        self._done = False
        self.replayed = False

    @property
    def done(self) -> bool:
        """True once the call has completed (its ``tool.completed`` is published)."""
        return self._done

    async def finish(self, result: Any = None) -> None:
        """Complete the call with ``result`` (see :attr:`result`); emits ``tool.completed``.

        :raises RuntimeError: if the call has already completed.
        """
        self.result = result
        self._complete(None)
        await self._turn._yield_now_and_then()

    async def fail(self, error: BaseException | str) -> None:
        """Complete the call as failed; the tool message says ``"Error: <error>"`` so
        the model can read what went wrong; emits ``tool.completed`` with ``error``.

        :raises RuntimeError: if the call has already completed.
        """
        self._complete(error)
        await self._turn._yield_now_and_then()

    def _complete(self, error: BaseException | str | None, *, publish: bool = True) -> None:
        if self._done:
            raise RuntimeError(f"tool call {self.call_id!r} ({self.name}) has already completed")
        self._done = True
        if isinstance(error, BaseException):
            self.exception = error
            cancelled = isinstance(error, anyio.get_cancelled_exc_class())
            self.error = "cancelled" if cancelled else f"{type(error).__name__}: {error}"
        elif error is not None:
            self.error = str(error)
        if self.error is not None:
            self.error = _json_text(self.error)
        self._turn._tool_completed(self, time.monotonic() - self._started, publish=publish)

    def __repr__(self) -> str:
        state = "failed" if self.error is not None else "done" if self._done else "running"
        return f"ToolCall({self.call_id!r}, {self.name!r}, {state})"


class _ToolGroup:
    """Tool calls made together: one assistant message whose ``tool_calls`` lists them,
    and their tool messages, held until the last call completes and then appended in
    the order of ``tool_calls`` (the Chat Completions API requires that order)."""

    __slots__ = ("calls", "message", "results")

    def __init__(self, message: Message) -> None:
        self.message = message
        self.calls: list[ToolCall] = []
        self.results: dict[str, Message] = {}

    @property
    def running(self) -> list[ToolCall]:
        return [call for call in self.calls if not call.done]


def _json_text(text: str) -> str:
    """``text``, with lone surrogates (which JSON cannot carry) escaped as ``\\udxxx``:
    text from a model must never make the session unsaveable."""
    try:
        orjson.dumps(text)
    except TypeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def _call_arguments(name: str, arguments: object) -> tuple[dict[str, Any] | str, str]:
    """(arguments as kept on the call, the JSON string of ``function.arguments``).

    :raises TypeError: if ``arguments`` is not a mapping, a string or ``None``, or is
        not JSON-ready.
    """
    if arguments is None:
        return {}, "{}"
    if isinstance(arguments, str):
        arguments = _json_text(arguments)
        try:
            parsed = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return arguments, arguments
        return (parsed if isinstance(parsed, dict) else arguments), arguments
    if not isinstance(arguments, Mapping):
        raise TypeError(
            f"invalid arguments {arguments!r} of tool call {name!r}: must be a dict, "
            "a JSON string or None"
        )
    args = dict(arguments)
    check_json_ready(args, f"argument of tool call {name!r}:")
    return args, orjson.dumps(args).decode()


class Turn:
    """What an agent gets for one turn: the conversation so far and the ways to emit.

    Every emitting method is a coroutine; call it from the agent's tasks only. After
    the turn has ended they raise :class:`RuntimeError`.

    :ivar session_id: the session.
    :ivar stream_id: this turn's stream.
    :ivar user_message: the user's text for this turn.
    :ivar history: the session's messages before this turn, as stored (a list of
        message dicts with private keys; treat as read-only). To send the conversation
        to a model use :meth:`model_messages`.
    :ivar title: the session title when the turn started.
    :ivar metadata: per-turn JSON object the caller passed to ``start_turn`` (``{}``
        if none), e.g. what a front end sent along with the message.
    :ivar config: per-turn settings the caller passed to ``start_turn`` (``{}`` if
        none), e.g. a model name.
    :ivar resumed: the resume attempt this run of the turn is: 0 on a first run, 1 after
        the first resume (``rt.resume``), and so on. A resumed turn continues from its
        durable history: :meth:`model_messages` holds the tool calls that completed
        (their results from the checkpoint or the tool ledger), not the unfinished text,
        and :attr:`pending_tool_calls` the calls to settle before calling a model again.
    """

    def __init__(
        self,
        session: Session,
        log: StreamLog,
        user_message: str,
        history: list[Message],
        *,
        metadata: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        store: Store | None = None,
        lease: Lease | None = None,
        attempt: int = 0,
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
        self._draft_version = 0  # counts tokens, so checkpoints see streamed text
        self._partial: Message | None = None  # the draft as materialised in the messages
        self._group: _ToolGroup | None = None
        self._call_ids: set[str] = set()
        self._since_yield = 0
        self._activity = 0
        self._closed = False
        self.resumed = attempt
        self._store = store
        self._lease = lease
        self._ledger: dict[str, ToolCallRecord] = {}  # records known when resumed
        self._pending: dict[str, ToolCall] = {}  # resumed calls not settled yet
        self._done_calls: dict[str, ToolCall] = {}  # completed before the resume
        self._slot: Message | None = None  # the dropped draft's place, until reused
        self._claimed: int | None = None  # messages the turn's claim made durable
        record = record_of(session, self.stream_id)
        self._reserved: float = record["seq_reserved"] if record is not None else math.inf
        self._reserve_at: float = self._reserved - SEQ_SLACK
        self._reserve_hook: Callable[[], Awaitable[None]] | None = None
        self._save_lock = Mutex()  # checkpoints one at a time
        self._handle: TurnHandle | None = None  # set by run_turn

    # -- resume ---------------------------------------------------------------------

    def _resume_from(self, plan: ResumePlan, records: list[ToolCallRecord]) -> None:
        """Take over an interrupted turn's state (see ``_resume.prepare_resume``): its
        completed calls, its open group and the place of its dropped draft. Publishes
        the tool events the durable log lacks."""
        self._ledger = {r.call_id: r for r in records}
        for call_id, (result, error) in plan.results.items():
            call = ToolCall(self, "", {}, call_id)
            call.result, call.error, call._done, call.replayed = result, error, True, True
            self._done_calls[call_id] = call
            self._call_ids.add(call_id)
        for call_id, name, args, result, error, finished in plan.republish:
            started = {"call_id": call_id, "name": name, "arguments": args}
            self._log.publish(ev.TOOL_STARTED, started)
            if finished and call_id in self._done_calls:
                self._done_calls[call_id].name = name
                completed = {"call_id": call_id, "name": name, "result": result}
                self._log.publish(
                    ev.TOOL_COMPLETED, completed | {"error": error, "duration_s": 0.0}
                )
        if plan.pending is not None:
            group = self._group = _ToolGroup(plan.pending)
            for spec in plan.pending["tool_calls"]:
                function = spec.get("function", {})
                call = ToolCall(self, function.get("name", ""), {}, spec["id"])
                call.arguments = _call_arguments(call.name, function.get("arguments"))[0]
                call._group = group
                group.calls.append(call)
                self._call_ids.add(call.call_id)
                record = self._ledger.get(call.call_id)
                if record is not None and record.state != "started":
                    call.replayed = True
                    call.result = record.result
                    published = call.call_id in plan.durable_completed
                    call._complete(record.error, publish=not published)
                    self._done_calls[call.call_id] = call
                else:
                    self._pending[call.call_id] = call
        if plan.slot is not None:
            self._slot = self._partial = plan.slot

    @property
    def pending_tool_calls(self) -> list[ToolCall]:
        """The calls a resumed turn found started and unanswered, in call order: settle
        each with :meth:`run_tool` (the ledger decides whether it runs), or leave them:
        the turn's next emission gives each an "outcome unknown" result. Empty on a
        first run."""
        return list(self._pending.values())

    def resumed_call(self, call_id: str) -> ToolCall | None:
        """The call ``call_id`` if it was made before this turn was resumed (completed,
        or pending until settled), else ``None``. A scripted agent that replays its
        steps uses it to skip what it already said before such a call: that text is in
        the transcript."""
        return self._done_calls.get(call_id) or self._pending.get(call_id)

    def _settle_pending(self) -> None:
        """Answer the resumed calls the agent left with an "outcome unknown" result (a
        completed ledger record was applied when the turn resumed)."""
        pending, self._pending = self._pending, {}
        for call in pending.values():
            self._done_calls[call.call_id] = call
            if not call.done:
                call.replayed = True
                record = self._ledger.get(call.call_id)
                call.result = outcome_unknown(record, call.call_id, call.name)
                call._complete(None)

    # -- internals shared with the runner ---------------------------------------------

    def _publish(self, type: str, data: Mapping[str, Any]) -> Event:
        """Publish at once (no await): data that is not JSON-ready raises here,
        before the caller has changed anything it would have to undo."""
        if self._closed:
            raise RuntimeError(f"turn {self.stream_id!r} has ended; cannot emit {type!r}")
        return self._log.publish(type, cast("dict[str, Any]", data))

    def _due(self, seq: int) -> bool:
        """After publishing event ``seq``: whether the emitter must await
        :meth:`_yield_now_and_then` (a seq reservation to extend, or its turn to yield to
        the scheduler). A plain call, so that the 63 of 64 emissions needing neither
        build no coroutine (one per token was a tenth of a token's cost, W4)."""
        if seq >= self._reserve_at:
            return True
        n = self._since_yield + 1
        if n >= _YIELD_EVERY:
            return True
        self._since_yield = n
        return False

    async def _yield_now_and_then(self) -> None:
        if self._log.last_seq >= self._reserve_at:
            await self._extend_reservation()
        self._since_yield += 1
        if self._since_yield >= _YIELD_EVERY:
            self._since_yield = 0
            await anyio.lowlevel.checkpoint()

    async def _extend_reservation(self) -> None:
        """Make a larger seq reservation durable (a checkpoint) before publishing past
        the current one; if that fails, try again a few events later."""
        hook = self._reserve_hook
        self._reserve_at = math.inf  # the checkpoint itself publishes
        try:
            if hook is not None:
                await hook()
        except LeaseLost:
            raise
        except Exception:
            logger.exception("could not extend the seq reservation of %s", self.stream_id)
        finally:
            self._reserve_at = self._reserved - SEQ_SLACK
            if self._log.last_seq >= self._reserve_at:  # not extended: retry soon
                self._reserve_at = self._log.last_seq + SEQ_SLACK // 2

    async def _emit(self, type: str, data: Mapping[str, Any]) -> Event:
        event = self._publish(type, data)
        if self._due(event.seq):
            await self._yield_now_and_then()
        return event

    def _append(self, message: Message) -> None:
        self._session.messages.append(message)
        self._activity += 1

    def _running_calls(self) -> list[ToolCall]:
        return [] if self._group is None else self._group.running

    def _refuse_while_calls_run(self, what: str) -> None:
        if self._pending:
            self._settle_pending()
        running = self._running_calls()
        if running:
            ids = ", ".join(call.call_id for call in running)
            raise RuntimeError(
                f"cannot {what} while tool calls {ids} are running: their results must "
                "directly follow the assistant message that made them"
            )

    def _materialize_partial(self) -> None:
        """Write the streamed-but-unfinished assistant text into the messages as one
        ``_partial`` message, so a checkpoint persists it (hermes-webui issue #765).
        Not while tool calls run: nothing may come between their call and results."""
        if not self._draft or self._running_calls():
            return
        draft = self._draft
        text = "".join(draft)
        draft.clear()  # joined once: the next checkpoint joins only what came since
        draft.append(text)  # (the same list: a new one per checkpoint would be promoted)
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
        self._draft.clear()
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
            self._activity += 1
            return partial
        message: Message = {"role": "assistant", "content": text, "timestamp": _now()}
        if extra:
            message.update(extra)
        self._append(message)
        return message

    def _end_running_calls(self, reason: str) -> None:
        """Fail the calls still running when the turn ends, so each gets its result."""
        for call in self._running_calls():
            call._complete(reason)

    def _tool_completed(self, call: ToolCall, duration: float, *, publish: bool = True) -> None:
        group = call._group
        assert group is not None
        result, content = _tool_result(call.result)
        message: Message = {
            "role": "tool",
            "tool_call_id": call.call_id,
            "name": call.name,
            "content": f"Error: {call.error}" if call.error is not None else content,
            "timestamp": _now(),
        }
        if call.error is not None:
            message["_error"] = True
        group.results[call.call_id] = message
        self._activity += 1
        if not group.running:  # the group is complete: its results, in call order
            self._session.messages.extend(group.results[c.call_id] for c in group.calls)
        # Synchronous publish: this also runs while the block unwinds from a cancellation.
        if not self._closed and publish:
            data: ev.ToolCompletedData = {
                "call_id": call.call_id,
                "name": call.name,
                "result": None if call.error is not None else result,
                "error": call.error,
                "duration_s": round(duration, 6),
            }
            if isinstance(call.summary, str) and call.summary:
                data["summary"] = _json_text(call.summary)
            self._log.publish(ev.TOOL_COMPLETED, cast("dict[str, Any]", data))

    # -- the agent's API --------------------------------------------------------------

    def model_messages(self) -> list[dict[str, Any]]:
        """The conversation so far as OpenAI Chat Completions ``messages``, ready to send
        to a model: the history, this turn's user message and what the turn has
        finished so far (assistant messages, tool calls with their results), without
        the text still streaming.

        Rendered by :func:`runtime.model_messages`: private keys stripped, markers and
        partial output as short notes, every tool call paired with its result.
        """
        if self._pending:
            self._settle_pending()
        messages = self._session.messages
        if self._partial is not None:
            messages = [m for m in messages if m is not self._partial]
        return to_model_messages(messages)

    async def token(self, text: str) -> None:
        """Stream assistant text (event ``token`` ``{"text"}``); it accumulates into the
        current assistant message until :meth:`reply` or a tool call finishes it.

        :raises TypeError: if ``text`` is not a ``str`` or JSON cannot carry it.
        """
        if not isinstance(text, str):
            raise TypeError(f"token text must be str, not {type(text).__name__}")
        if self._pending:
            self._settle_pending()
        if self._closed:
            raise RuntimeError(f"turn {self.stream_id!r} has ended; cannot emit 'token'")
        # refuses text JSON cannot carry; what _emit does, inlined for the commonest event
        seq = self._log.publish(ev.TOKEN, {"text": text}).seq
        self._draft.append(text)
        self._draft_version += 1
        if self._due(seq):
            await self._yield_now_and_then()

    async def reasoning(self, text: str) -> None:
        """Stream reasoning text (event ``reasoning`` ``{"text"}``); not stored as a message."""
        await self._emit(ev.REASONING, {"text": text})

    async def reply(self, text: str = "") -> Message | None:
        """Stream ``text`` (if any) and finish the current assistant message; emits
        ``message``. Returns the message, or ``None`` if there was no text at all.

        :raises RuntimeError: if there is text to finish while tool calls run.
        """
        if text or self._draft:
            self._refuse_while_calls_run("finish an assistant message")
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
        :raises RuntimeError: while tool calls run.
        """
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError(f"invalid message {message!r}: must be a dict with a str 'role'")
        check_json_ready(message, "message")
        self._refuse_while_calls_run("append a message")
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
        """Report token usage of a model call (event ``usage``), e.g.
        ``prompt_tokens=``, ``completion_tokens=``, ``total_tokens=`` (OpenAI's names).

        :raises TypeError: if a count is not an ``int``.
        """
        for key, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"invalid usage count {key}={value!r}: must be an int")
        await self._emit(ev.USAGE, dict(counts))

    async def start_tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | str | None = None,
        *,
        call_id: str | None = None,
    ) -> ToolCall:
        """Start a tool call and return it; end it with :meth:`ToolCall.finish` or
        :meth:`ToolCall.fail`. Emits ``tool.started`` ``{call_id, name, arguments}``.

        Calls started while other calls of the turn are still running join their
        group: the assistant message carrying ``tool_calls`` lists them all, and their
        tool messages follow it together, in the order the calls started, once the
        last one completes (however they interleave in time). A call started when no
        call runs opens a new group, whose assistant message also finishes the text
        streamed so far. Calls still running when the turn ends fail with
        ``"cancelled"`` (or ``"the turn ended before the call completed"``).

        :param arguments: a dict (JSON-ready), the JSON string the model sent (kept as
            it was, even when it is not valid JSON), or ``None`` for ``{}``.
        :param call_id: the model's tool-call id; a new ``"call_…"`` id when ``None``.
            In a resumed turn (:attr:`resumed`), the id of a call made before the resume
            returns that call (completed, or pending) and emits nothing.
        :raises ValueError: for an empty name, or a ``call_id`` that is empty or already
            used in this turn.
        :raises TypeError: for arguments that are not a dict, a string or ``None``, or
            not JSON-ready.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"invalid tool name {name!r}: must be a non-empty string")
        name = _json_text(name)
        if call_id is None:
            call_id = "call_" + uuid.uuid4().hex[:24]
        elif not isinstance(call_id, str) or not call_id:
            raise ValueError(f"invalid call_id {call_id!r}: must be a non-empty string")
        call_id = _json_text(call_id)
        resumed = self._done_calls.get(call_id) or self._pending.get(call_id)
        if resumed is not None:  # a call from before the resume: no new call
            if not resumed.name:
                resumed.name = name
            return resumed
        if self._pending:
            self._settle_pending()
        if call_id in self._call_ids:
            raise ValueError(f"invalid call_id {call_id!r}: already used in this turn")
        args, encoded = _call_arguments(name, arguments)
        if self._closed:
            raise RuntimeError(f"turn {self.stream_id!r} has ended; cannot start a tool call")
        spec = {
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": encoded},
        }
        group = self._group
        if group is not None and group.running:
            group.message["tool_calls"].append(spec)  # still the last message
            self._activity += 1
        else:
            message = self._finish_draft({"tool_calls": [spec]}, force=True)
            assert message is not None
            group = self._group = _ToolGroup(message)
        call = ToolCall(self, name, args, call_id)
        call._group = group
        group.calls.append(call)
        self._call_ids.add(call_id)
        started: ev.ToolStartedData = {"call_id": call_id, "name": name, "arguments": args}
        await self._emit(ev.TOOL_STARTED, started)
        return call

    @asynccontextmanager
    async def tool(
        self,
        name: str,
        arguments: Mapping[str, Any] | str | None = None,
        *,
        call_id: str | None = None,
    ) -> AsyncIterator[ToolCall]:
        """Run a tool call as a block: :meth:`start_tool` on entry, and on exit the
        call completes with ``call.result`` (``tool.completed``
        ``{call_id, name, result, error, duration_s}``, seconds).

        An :class:`Exception` raised in the block fails the call and is **not**
        re-raised: the tool message says ``"Error: <type>: <message>"`` so the model
        can read it and the turn goes on; ``call.error`` and ``call.exception`` tell
        the agent, which may re-raise ``call.exception`` to end the turn instead.
        Cancellation (and any other ``BaseException``) fails the call with
        ``"cancelled"`` and propagates. Several blocks open at once (nested, or in
        tasks of one task group after each has entered) form one group of parallel
        calls, see :meth:`start_tool`.

        :raises ValueError, TypeError: as :meth:`start_tool`.
        """
        call = await self.start_tool(name, arguments, call_id=call_id)
        try:
            yield call
        except Exception as exc:
            if call.done:
                raise
            call._complete(exc)
        except BaseException as exc:
            # a turn suspended by a shutdown leaves the call open, as a crash would: the
            # resumed turn settles it (through the ledger, or "outcome unknown")
            handle = self._handle
            if not call.done and not (handle is not None and handle.suspend_requested):
                call._complete(exc)
            raise
        else:
            if not call.done:
                call._complete(None)

    async def call_tool(
        self,
        tool: LedgerTool,
        arguments: Mapping[str, Any] | str | None = None,
        *,
        call_id: str | None = None,
    ) -> ToolCall:
        """Call ``tool`` at most once per ``call_id``, through the store's tool ledger:
        :meth:`start_tool`, then :meth:`run_tool`. Returns the completed call (see
        :attr:`ToolCall.result`, :attr:`ToolCall.error`, :attr:`ToolCall.replayed`).

        Give a ``call_id`` that is the same on every attempt of the turn (the model's
        id, or one derived from the step, e.g. ``"search-3"``): that is what lets a
        resumed turn find the call's stored result instead of running it again.

        :param tool: a :class:`runtime.Tool` (or any object with ``name``,
            ``idempotent``, ``reconcile`` and ``async __call__(arguments)``).
        :raises ValueError, TypeError: as :meth:`start_tool`.
        :raises LeaseLost: if the turn lost its session (nothing was written).
        """
        call = await self.start_tool(tool.name, arguments, call_id=call_id)
        await self.run_tool(call, tool)
        return call

    async def run_tool(self, call: ToolCall, tool: LedgerTool) -> None:
        """Complete a started ``call`` by ``tool`` under the ledger's policy:

        * the call already completed (before a resume, or its record holds a result):
          nothing runs, the stored result is used (``call.replayed``);
        * otherwise its intent is made durable (``store.record_tool_call``) before the
          tool runs. If the ledger shows it was started by an earlier attempt and left
          no result: ``tool.idempotent`` runs it again; else ``tool.reconcile(record)``
          gives the result; else it gets an "outcome unknown" result
          (:func:`runtime.outcome_unknown`) and does not run;
        * the result (or the exception's text) is made durable
          (``store.record_tool_result``) before ``tool.completed`` is published.

        An exception in the tool fails the call (``"Error: …"`` for the model) and is
        not re-raised; cancellation leaves the intent without a result, so a resumed
        turn treats the call as "outcome unknown". A store without a ledger
        (``supports_tool_ledger`` false) runs the tool with no guarantee.

        At most once means: the tool's function is entered at most once per call id
        across every attempt of the turn, unless it is ``idempotent``. An effect the
        tool had before the process stopped is not undone; the intent record is then
        its only trace, and ``reconcile`` is how to look it up.

        :raises LeaseLost: if the turn lost its session; nothing was written.
        """
        if call.done:
            return
        if self._pending.pop(call.call_id, None) is not None:
            self._done_calls[call.call_id] = call
        if not isinstance(call.arguments, dict):  # nothing can run: nothing to record
            await call.fail(f"the arguments are not a JSON object: {call.arguments!r}")
            return
        store = self._store
        ledger = store is not None and store.supports_tool_ledger
        record: ToolCallRecord | None = None
        if ledger:
            assert store is not None
            record = await store.record_tool_call(
                self.session_id,
                self.stream_id,
                call.call_id,
                call.name,
                call.arguments,
                attempt=self.resumed,
                lease=self._lease,
            )
            if record.state != "started":
                call.replayed = True
                call.result = record.result
                call._complete(record.error)
                await self._yield_now_and_then()
                return
            if record.attempt != self.resumed and not tool.idempotent:
                await self._settle_unknown(call, tool, record)
                return
        try:
            result = await tool(call.arguments)
        except Exception as exc:
            await self._record_outcome(call, None, exc, ledger)
        else:
            await self._record_outcome(call, result, None, ledger, summary=tool)

    async def _settle_unknown(
        self, call: ToolCall, tool: LedgerTool, record: ToolCallRecord
    ) -> None:
        """A call an earlier attempt started and left without a result: reconcile it,
        or give it the "outcome unknown" result; recorded, never run."""
        call.replayed = True
        reconcile = tool.reconcile
        if reconcile is None:
            await self._record_outcome(
                call, outcome_unknown(record, call.call_id, call.name), None, True
            )
            return
        try:
            result = await call_maybe_async(reconcile, record)
        except Exception as exc:
            await self._record_outcome(call, None, exc, True)
        else:
            await self._record_outcome(call, result, None, True)

    async def _record_outcome(
        self,
        call: ToolCall,
        result: Any,
        error: Exception | None,
        ledger: bool,
        *,
        summary: object = None,
    ) -> None:
        """Make the call's result durable in the ledger, then complete it."""
        value = _tool_result(result)[0] if error is None else None
        if error is None:
            make = getattr(summary, "summary", None)
            if callable(make):
                try:
                    call.summary = str(make(result))
                except Exception:
                    logger.exception("summary of tool call %s failed", call.call_id)
        if ledger:
            assert self._store is not None
            text = None if error is None else _json_text(f"{type(error).__name__}: {error}")
            await self._store.record_tool_result(
                self.session_id,
                self.stream_id,
                call.call_id,
                result=value,
                error=text,
                lease=self._lease,
            )
        if error is None:
            await call.finish(value)
        else:
            await call.fail(error)


def _tool_result(result: Any) -> tuple[Any, str]:
    """A tool's result as (event value, message content), both JSON-ready whatever the
    tool returned: a value JSON cannot carry becomes its best text form, so a bad
    result never makes the turn unsaveable."""
    if isinstance(result, str):
        text = _json_text(result)
        return text, text
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

    def __init__(
        self, session_id: str, stream_id: str, log: StreamLog, lease: Lease | None = None
    ) -> None:
        self.session_id = session_id
        self.stream_id = stream_id
        self.log = log
        #: the lease ``start_turn`` claimed; every write of the turn carries it
        self.lease = lease
        self.scope: anyio.CancelScope | None = None
        #: set once the turn's final save is done (``await handle.finished.wait()``)
        self.finished = Latch()
        self.cancel_requested = False
        self.suspend_requested = False
        self.lease_lost: LeaseLost | None = None

    def cancel(self) -> None:
        """Ask the turn to stop; partial output is kept."""
        self.cancel_requested = True
        if self.scope is not None:
            self.scope.cancel()

    def suspend(self) -> None:
        """Ask the turn to stop for a resume elsewhere or later (a graceful shutdown):
        the agent is cancelled, the turn's state is checkpointed whole with its turn
        record kept, and its lease is given up, so that a resume may take it over at
        once. Nothing ends the stream; tool calls still running stay open."""
        self.suspend_requested = True
        self.cancel()


#: Fields the final save changes besides the title.
_FINAL_FIELDS = frozenset({"active_stream_id", "pending_user_message", "pending_started_at"})


def _delta(
    turn: Turn, state: dict[str, Any], fields: frozenset[str] = frozenset()
) -> SaveDelta | None:
    """What changed since the turn's last durable write: the messages after the ones
    counted then, the last of those again if it was still open (a streamed reply that
    grows in place, a tool-call message that more calls may join), the title if the
    agent set it, and ``fields``. ``None`` while the runner does not know what is
    stored (before its first save, after a failed one): the store then writes the last
    stored message and every field again."""
    base = state.get("count")
    if base is None:
        return None
    session = turn._session
    keep = base - 1 if state["open_last"] else base
    if keep > len(session.messages):  # the list shrank under the runner
        return None
    if session.title != state["title"]:
        fields = fields | {"title"}
    return SaveDelta(base, keep, fields)


def _saved(turn: Turn, state: dict[str, Any], count: int) -> None:
    """Record what a save made durable: ``count`` messages (counted as it started)."""
    session = turn._session
    last = session.messages[count - 1] if 0 < count <= len(session.messages) else None
    group = turn._group
    state["count"] = count
    state["open_last"] = last is not None and (
        last is turn._partial or (group is not None and last is group.message)
    )
    state["title"] = session.title


async def _save_delta(
    turn: Turn, store: Store, state: dict[str, Any], delta: SaveDelta | None, **kwargs: Any
) -> None:
    """``store.save`` with ``delta``; a delta the store refuses (it was computed against
    another stored state, nothing was written) is made again against the count the
    store holds when it holds more of this turn's messages, else dropped and the save
    made without it. Any other failure forgets what is stored, so the next save carries
    no delta.

    The count a save made durable is taken when it is called, and a save that waits for
    the store (its lock, held by the tool ledger's write) encodes the messages the agent
    appended meanwhile too: the store then holds more than the runner counted, and the
    next delta is refused. Those messages are this session's own, from the same list,
    so the delta is made again with that ``base`` and the same ``keep`` (rewriting them
    from ``keep``, as they were when written); a final save without a delta rewrites
    the whole history on PostgreSQL."""
    session = turn._session
    count = session.message_count
    try:
        try:
            await store.save(session, delta=delta, **kwargs)
        except WriteConflict as exc:
            if delta is None:
                raise
            stored = exc.stored_count
            # counted again: the agent may have appended while the refused save ran
            count = session.message_count
            if isinstance(stored, int) and delta.base < stored <= count:
                again = SaveDelta(stored, delta.keep, delta.fields)
                await store.save(session, delta=again, **kwargs)
            else:
                logger.warning("session %s: saving without the delta: %s", turn.session_id, exc)
                await store.save(session, **kwargs)
    except BaseException:
        state.pop("count", None)
        raise
    _saved(turn, state, count)


async def _checkpoint(turn: Turn, store: Store, state: dict[str, Any], lease: Lease | None) -> None:
    """One checkpoint: persist the running session and the new events (renewing the
    lease in the same write), then announce it. When the stream has come within half a
    window of its seq reservation, the same write extends the reservation."""
    async with turn._save_lock:
        turn._materialize_partial()
        log = turn._log
        up_to = log.last_seq
        if up_to <= state["persisted_seq"] and turn._activity == state.get("activity", -1):
            return  # a reservation checkpoint already saved all of it
        # as records: a run of tokens goes to the store as one (see _events.EventRecords)
        events = EventRecords(log.records_between(state["persisted_seq"], up_to))
        # Counted before the save: the agent goes on appending while it runs, and the
        # event must not claim messages the save never saw.
        messages = turn._session.message_count
        session = turn._session
        record = record_of(session, turn.stream_id)
        reserved = None
        if record is not None and up_to + SEQ_WINDOW // 2 > record["seq_reserved"]:
            reserved = up_to + SEQ_WINDOW
            with_record(session, record | {"seq_reserved": reserved})
        fields = frozenset() if reserved is None else frozenset({"metadata"})
        await _save_delta(
            turn,
            store,
            state,
            _delta(turn, state, fields),
            skip_index=True,
            events=events,
            lease=lease,
        )
        state["persisted_seq"] = up_to
        state["activity"] = turn._activity
        if reserved is not None:
            turn._reserved = reserved
            turn._reserve_at = reserved - SEQ_SLACK
    data: ev.CheckpointData = {
        "messages": messages,
        "activity": turn._activity,
        "persisted_seq": up_to,
    }
    await turn._emit(ev.CHECKPOINT, data)


async def _checkpoint_loop(
    turn: Turn,
    store: Store,
    interval: float,
    stop: StopEvent,
    state: dict[str, Any],
    handle: TurnHandle,
    wakeups: Wakeups,
) -> None:
    """The checkpoint coroutine: every ``interval`` seconds, save if the activity
    counter advanced or more text was streamed, else renew the lease once a third of its
    ttl has passed; exits at once when ``stop`` is set.

    Streamed text counts as progress (a departure from the activity counter alone):
    an LLM answer without tool calls would otherwise never be checkpointed and a
    crash would lose all of it.

    A failed save is announced to subscribers at once (a ``checkpoint`` event with
    ``error``, ``failures`` and the unchanged ``persisted_seq``) and retried with
    exponential backoff, up to 32 intervals apart. A lost lease (``LeaseLost``) cancels
    the turn: nothing more is written.

    It sleeps on the runtime-wide timer (:class:`~runtime._timer.Wakeups`), not on a
    cancel scope with a deadline per tick, so a sleeping turn holds one future."""
    saved = (0, 0)  # the activity counter and the draft version start at 0
    failures = 0
    lease = handle.lease
    renewed = time.monotonic()
    while not stop.is_set():
        await wakeups.sleep(interval * (1 << min(failures, 5)), stop)
        if stop.is_set():
            return
        try:
            progress = (turn._activity, turn._draft_version)
            if progress != saved:
                saved = progress
                failures = await _try_checkpoint(turn, store, state, lease, interval, failures)
                if failures:
                    saved = (-1, -1)  # retried at the next tick, whatever the agent does
                else:
                    renewed = time.monotonic()
            elif lease is not None and time.monotonic() - renewed >= lease.ttl / 3:
                try:
                    await store.renew_lease(turn.session_id, lease)
                    renewed = time.monotonic()
                except LeaseLost:
                    raise
                except Exception:
                    logger.exception("lease renewal of session %s failed", turn.session_id)
        except LeaseLost as exc:
            logger.error("turn %s lost its lease: %s", turn.stream_id, exc)
            handle.lease_lost = exc
            if handle.scope is not None:
                handle.scope.cancel()
            return


async def _try_checkpoint(
    turn: Turn,
    store: Store,
    state: dict[str, Any],
    lease: Lease | None,
    interval: float,
    failures: int,
) -> int:
    """One checkpoint; returns the failures in a row after it (0 on success).

    :raises LeaseLost: if the lease was lost (nothing was written).
    """
    try:
        await _checkpoint(turn, store, state, lease)
        return 0
    except LeaseLost:
        raise
    except Exception as exc:
        failures += 1
        logger.error(
            "checkpoint of session %s failed (%d in a row)",
            turn.session_id,
            failures,
            exc_info=exc,
        )
        failed: ev.CheckpointData = {
            "error": f"{type(exc).__name__}: {exc}",
            "failures": failures,
            "retry_in_s": interval * (1 << min(failures, 5)),
            "persisted_seq": state["persisted_seq"],
        }
        turn._publish(ev.CHECKPOINT, failed)
        return failures


def _outcome_messages(
    turn: Turn, outcome: ev.Outcome, error: BaseException | None
) -> list[Message]:
    """Messages that record how the turn ended, after the partial output is kept."""
    if turn._pending:
        turn._settle_pending()
    slot = turn._slot
    if slot is not None and turn._partial is slot and not turn._draft:
        # the dropped draft's place was never taken: the turn ended without more text
        turn._partial = None
        turn._session.messages[:] = [m for m in turn._session.messages if m is not slot]
    turn._end_running_calls(
        "cancelled" if outcome == "cancelled" else "the turn ended before the call completed"
    )
    if outcome == "done":
        turn._finish_draft()
        return []
    # Keep the whole draft as one _partial message: a checkpoint may have materialised
    # an earlier prefix of it, which must now carry the text streamed since.
    turn._materialize_partial()
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
    outcome: ev.Outcome,
    error: BaseException | None,
    state: dict[str, Any],
    save_timeout: float,
    lease: Lease | None = None,
) -> None:
    """Merge, clear the pending fields, save with the index (releasing the lease in
    the same write), then publish the end. A turn whose lease was lost writes nothing
    and ends with ``error`` ``{"type": "lease_lost"}``."""
    session = turn._session
    fields = _FINAL_FIELDS | ({"metadata"} if RESUME_KEY in session.metadata else set())
    delta = _delta(turn, state, fields)  # before the draft is finished in place
    # a resumed turn that streamed no text again gives up its dropped draft's place: a
    # shrink that is meant, so no backup (recover() would put the running state back)
    unused_slot = turn._slot is not None and turn._partial is turn._slot and not turn._draft
    for message in _outcome_messages(turn, outcome, error):
        session.messages.append(message)
    if RESUME_KEY in session.metadata:
        with_record(session, None)  # the turn has ended: nothing to resume
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
    if outcome == "lease_lost":
        terminal = (ev.ERROR, {"type": "lease_lost", "message": str(error)})
    tail = [
        Event(seq + 1, turn.stream_id, turn.session_id, terminal[0], terminal[1], ts),
        Event(seq + 2, turn.stream_id, turn.session_id, ev.STREAM_END, {"outcome": outcome}, ts),
    ]
    events = EventRecords(log.records_between(state["persisted_seq"], seq) + event_records(tail))
    saved = False
    with anyio.move_on_after(save_timeout, shield=True):
        try:
            if outcome == "lease_lost":
                raise error if isinstance(error, LeaseLost) else LeaseLost(turn.session_id)
            await _save_delta(
                turn,
                store,
                state,
                delta,
                events=events,
                lease=lease,
                lease_mode="release",
                discard_backup=unused_slot,
            )
            saved = True
        except LeaseLost as exc:
            logger.error("turn %s ends without saving: %s", turn.stream_id, exc)
            tail[0] = Event(
                seq + 1,
                turn.stream_id,
                turn.session_id,
                ev.ERROR,
                {"type": "lease_lost", "message": str(exc)},
                ts,
            )
            tail[1] = Event(
                seq + 2,
                turn.stream_id,
                turn.session_id,
                ev.STREAM_END,
                {"outcome": "lease_lost"},
                ts,
            )
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
    if not saved and lease is not None and tail[0].data.get("type") != "lease_lost":
        # the release never happened: free the lease, or a store owned by this process
        # would answer SessionBusy for a turn that is over
        with anyio.move_on_after(save_timeout, shield=True):
            try:
                await store.abandon_lease(turn.session_id, lease)
            except Exception:
                logger.exception("could not give up the lease of session %s", turn.session_id)
    turn._closed = True
    for event in tail:
        log.append(event)
    with anyio.move_on_after(save_timeout, shield=True):
        await log.flush()  # a remote log: the end reaches it before the turn is over


async def _suspend_save(
    turn: Turn,
    store: Store,
    state: dict[str, Any],
    save_timeout: float,
    lease: Lease | None,
) -> bool:
    """Keep a turn stopped by a graceful shutdown for a resume: one last checkpoint of
    everything it made (messages, the streamed draft, the events not yet durable) with
    its turn record marked ``suspended_at`` and its suspension counted, releasing the
    lease in the same write; nothing ends the stream. Returns ``False`` (after logging
    why) when the turn cannot be kept so: it has no turn record, its lease was lost, or
    the save failed. After a failed save the stored state is the last checkpoint and
    the lease expires by itself, as after a crash."""
    session = turn._session
    record = record_of(session, turn.stream_id)
    if record is None:
        return False
    log = turn._log
    try:
        async with turn._save_lock:
            turn._materialize_partial()
            up_to = log.last_seq
            events = EventRecords(log.records_between(state["persisted_seq"], up_to))
            mark = {"suspended": suspensions(record) + 1, "suspended_at": _now()}
            with_record(session, record | mark)
            delta = _delta(turn, state, frozenset({"metadata"}))
            with anyio.move_on_after(save_timeout, shield=True) as timeout:
                await _save_delta(
                    turn, store, state, delta, events=events, lease=lease, lease_mode="release"
                )
            if timeout.cancelled_caught:
                raise TimeoutError(f"the save exceeded {save_timeout}s")
    except Exception as exc:
        with_record(session, record)
        logger.error("turn %s could not be suspended: %s", turn.stream_id, exc, exc_info=exc)
        return False
    state["persisted_seq"] = up_to
    turn._closed = True
    log.abandon()
    with anyio.move_on_after(save_timeout, shield=True):
        await log.flush()  # a remote log: every event reaches it before the process goes
    logger.warning("suspended stream %s at seq %d for a resume", turn.stream_id, up_to)
    return True


async def _call_agent(agent: Agent, turn: Turn, stop: StopEvent) -> Exception | None:
    """Run the agent; returns the exception it raised (logged), ``None`` if it returned.
    Sets ``stop`` in a ``finally`` (a cancellation propagates)."""
    try:
        await agent(turn)
        return None
    except Exception as exc:
        logger.error("agent failed in session %s: %r", turn.session_id, exc, exc_info=exc)
        return exc
    finally:
        stop.set()


async def _join(task: asyncio.Task[None]) -> None:
    """Wait for a turn's checkpoint task once its stop event is set (it ends at once, or
    after the save in progress). If the turn is being cancelled, the task is cancelled
    too and waited for, shielded, as a task group does with its children; its own
    exception (a bug: it handles store errors itself) propagates."""
    try:
        await task  # a cancellation of this task cancels the awaited one as well
    except BaseException:
        if not task.done():
            task.cancel()
            with anyio.CancelScope(shield=True), contextlib.suppress(BaseException):
                await task
        raise


async def run_turn(
    agent: Agent,
    turn: Turn,
    handle: TurnHandle,
    store: Store,
    *,
    checkpoint_interval: float,
    final_save_timeout: float,
    wakeups: Wakeups,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run one turn to its end, as the turn's own task (``stream.started`` is already
    published by the caller). Under ``TaskGroup.start`` (trio) control returns to the
    caller once the turn's cancel scope is in place; a cancel requested before that
    (``TurnHandle.cancel``) ends the turn as soon as it runs.

    A cancellation from outside the turn (runtime shutdown) still gets the shielded
    final save and is then re-raised.
    """
    state: dict[str, Any] = {"persisted_seq": turn._log.last_seq}  # saved by start_turn
    if turn._claimed is not None:
        # what the claim stored, so the first save writes only what came after it (a
        # final save without a delta rewrites the whole history on a shared store)
        _saved(turn, state, turn._claimed)
    stop = StopEvent()
    turn._handle = handle

    # no closures: their cells are objects a live turn would hold for the collector
    turn._reserve_hook = functools.partial(_checkpoint, turn, store, state, handle.lease)
    outcome: ev.Outcome = "done"
    error: BaseException | None = None
    try:
        with anyio.CancelScope() as scope:
            handle.scope = scope
            if handle.cancel_requested:
                scope.cancel()
            task_status.started()
            try:
                checkpoints = (turn, store, checkpoint_interval, stop, state, handle, wakeups)
                loop = asyncio_loop()
                if loop is None:  # trio: the checkpoint coroutine in a task group
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(_checkpoint_loop, *checkpoints)
                        error = await _call_agent(agent, turn, stop)
                else:
                    # A bare task: an anyio task and a task group per turn hold ~20
                    # objects the garbage collector walks for as long as the turn lives.
                    task = loop.create_task(_checkpoint_loop(*checkpoints))
                    try:
                        error = await _call_agent(agent, turn, stop)  # sets stop
                    finally:
                        await _join(task)
            finally:
                stop.set()
            if error is not None:
                outcome = "error"
        if handle.lease_lost is not None:
            outcome, error = "lease_lost", handle.lease_lost
        elif scope.cancelled_caught or (handle.suspend_requested and error is not None):
            outcome = "cancelled"
    except anyio.get_cancelled_exc_class():
        try:
            await _end(turn, store, handle, "cancelled", None, state, final_save_timeout)
        finally:
            handle.finished.set()
        raise
    try:
        await _end(turn, store, handle, outcome, error, state, final_save_timeout)
    finally:
        handle.finished.set()


async def _end(
    turn: Turn,
    store: Store,
    handle: TurnHandle,
    outcome: ev.Outcome,
    error: BaseException | None,
    state: dict[str, Any],
    save_timeout: float,
) -> None:
    """The turn's last write: kept for a resume if a shutdown suspended it while it ran
    (:meth:`TurnHandle.suspend`), else the final save of its ``outcome``. A turn that
    cannot be kept for a resume (no turn record, a failed save) ends as cancelled."""
    if outcome == "cancelled" and handle.suspend_requested:
        with anyio.CancelScope(shield=True):
            if await _suspend_save(turn, store, state, save_timeout, handle.lease):
                return
        error = None
    await _final_save(turn, store, outcome, error, state, save_timeout, handle.lease)


def interval_ok(value: float, name: str) -> float:
    """:raises ValueError: unless ``value`` is a finite number of seconds > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value > 0)
    ):
        raise ValueError(f"invalid {name} {value!r}: must be a finite number of seconds > 0")
    return float(value)
