"""Scripted agents for tests of code that drives a :class:`~runtime.Runtime`."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from .._session import Message

if TYPE_CHECKING:
    from .._runner import Turn

# -- scripted agents --------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """Stream ``text`` with ``turn.token()``. A plain ``str`` step means the same."""

    text: str


@dataclass(frozen=True)
class Reasoning:
    """Emit ``turn.reasoning(text)``."""

    text: str


@dataclass(frozen=True)
class Tool:
    """Run ``async with turn.tool(name, arguments) as call`` and set ``call.result``.

    :ivar error: if set, raised inside the tool block instead (``tool.completed`` then
        carries the error, the tool message says ``Error: …``) and, unless ``catch``,
        re-raised out of the agent after the block.
    :ivar catch: leave ``error`` in the tool message only, so the agent carries on as
        an LLM tool loop does.
    :ivar call_id: the model's call id to keep (a new one when ``None``).
    """

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: Exception | None = None
    catch: bool = False
    call_id: str | None = None


@dataclass(frozen=True)
class Reply:
    """``turn.reply(text)``: stream ``text`` and finish the assistant message."""

    text: str = ""


@dataclass(frozen=True)
class AddMessage:
    """``turn.add_message(message)`` with a deep copy of ``message`` (one per replay)."""

    message: dict[str, Any]


@dataclass(frozen=True)
class SetTitle:
    """``turn.set_title(title)``."""

    title: str


@dataclass(frozen=True)
class Usage:
    """``turn.usage(prompt_tokens=..., completion_tokens=...)``."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Raise:
    """Raise ``error`` from the agent (the turn then ends with ``error``)."""

    error: Exception


@dataclass(frozen=True)
class Sleep:
    """``await anyio.sleep(seconds)``: a slow step (for cancellation and checkpoints;
    synchronise tests with :class:`Notify` / :class:`WaitFor`, not with timings)."""

    seconds: float


@dataclass(frozen=True)
class Notify:
    """Set ``event``: tells the test the agent reached this step."""

    event: anyio.Event


@dataclass(frozen=True)
class WaitFor:
    """Wait until the test sets ``event``: holds the agent at this step."""

    event: anyio.Event


@dataclass(frozen=True)
class Run:
    """Await ``fn(turn)``: any custom step."""

    fn: Callable[[Turn], Awaitable[None]]


#: One step of a script; a plain ``str`` is a :class:`Token`.
Step = (
    str
    | Token
    | Reasoning
    | Tool
    | Reply
    | AddMessage
    | SetTitle
    | Usage
    | Raise
    | Sleep
    | Notify
    | WaitFor
    | Run
)


@dataclass(frozen=True)
class TurnRecord:
    """What a :class:`ScriptedAgent` saw of one turn (``history`` is a copy)."""

    session_id: str
    stream_id: str
    user_message: str
    history: list[Message]


async def _play_tool(turn: Turn, step: Tool) -> None:
    async with turn.tool(step.name, dict(step.arguments), call_id=step.call_id) as call:
        if step.error is not None:
            raise step.error
        call.result = copy.deepcopy(step.result)
    if call.exception is not None and not step.catch:
        raise call.exception


async def _play(turn: Turn, step: Step) -> None:
    """Perform one step on ``turn``.

    :raises TypeError: for something that is not a :data:`Step`.
    """
    match step:
        case str() | Token():
            await turn.token(step if isinstance(step, str) else step.text)
        case Reasoning(text):
            await turn.reasoning(text)
        case Tool():
            await _play_tool(turn, step)
        case Reply(text):
            await turn.reply(text)
        case AddMessage(message):
            await turn.add_message(copy.deepcopy(message))
        case SetTitle(title):
            await turn.set_title(title)
        case Usage(prompt, completion):
            await turn.usage(prompt_tokens=prompt, completion_tokens=completion)
        case Raise(error):
            raise error
        case Sleep(seconds):
            await anyio.sleep(seconds)
        case Notify(event):
            event.set()
        case WaitFor(event):
            await event.wait()
        case Run(fn):
            await fn(turn)
        case _:
            raise TypeError(f"invalid script step {step!r}: not a runtime.testing step")


class ScriptedAgent:
    """An agent that replays the same steps on every turn and records each turn.

    :ivar steps: the script.
    :ivar turns: one :class:`TurnRecord` per call, in order.
    """

    def __init__(self, steps: Iterable[Step]) -> None:
        """:raises TypeError: if a step is not a :data:`Step`, naming it."""
        self.steps: tuple[Step, ...] = tuple(steps)
        for step in self.steps:
            if not isinstance(step, _STEP_TYPES):
                raise TypeError(f"invalid script step {step!r}: not a runtime.testing step")
        self.turns: list[TurnRecord] = []

    async def __call__(self, turn: Turn) -> None:
        self.turns.append(
            TurnRecord(
                turn.session_id, turn.stream_id, turn.user_message, copy.deepcopy(turn.history)
            )
        )
        for step in self.steps:
            await _play(turn, step)

    def __repr__(self) -> str:
        return f"ScriptedAgent({len(self.steps)} steps, {len(self.turns)} turns)"


_STEP_TYPES = (
    str,
    Token,
    Reasoning,
    Tool,
    Reply,
    AddMessage,
    SetTitle,
    Usage,
    Raise,
    Sleep,
    Notify,
    WaitFor,
    Run,
)


def scripted_agent(steps: Iterable[Step]) -> ScriptedAgent:
    """An ``async def agent(turn)`` that replays ``steps`` on every turn, e.g.::

        agent = scripted_agent([
            Reasoning("plan"),
            "Searching… ",
            Tool("grep", {"pattern": "TaskGroup"}, result={"hits": 12}),
            Reply("Found 12 modules."),
        ])

    ``agent.turns`` records each turn's ids, user message and history.

    :raises TypeError: if a step is not a :data:`Step`, naming it.
    """
    return ScriptedAgent(steps)
