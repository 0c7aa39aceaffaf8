"""An agent on the official ``openai`` SDK: any OpenAI-compatible Chat Completions API
(OpenAI, Ollama, vLLM, llama.cpp's server …) in a tool loop, streamed through a turn."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from .._exceptions import Error
from .._runner import Agent, ToolCall, Turn
from ._tools import FunctionTool

if TYPE_CHECKING:
    from openai import AsyncOpenAI

__all__ = ["ModelAPIError", "StepLimitExceeded", "openai_chat"]

_CLOSE_TIMEOUT = 5.0  # seconds a cancelled stream gets to close its connection


class ModelAPIError(Error):
    """The model's API failed: an HTTP error status (after the retries), no connection,
    a timeout, or a stream that broke or could not be parsed. The message names the
    API, the status and what it said."""


class StepLimitExceeded(Error):
    """The model still asked for tools after ``max_steps`` model calls."""


@dataclass
class _Pending:
    """A tool call whose pieces arrive as deltas across chunks."""

    id: str = ""
    name: str = ""
    arguments: str = ""


def _positive(value: object, name: str, *, integer: bool) -> None:
    ok = not isinstance(value, bool) and (
        isinstance(value, int) if integer else isinstance(value, int | float)
    )
    if not ok or not math.isfinite(float(value)) or float(value) <= 0:  # type: ignore[arg-type]
        kind = "an integer" if integer else "a number"
        raise ValueError(f"invalid {name} {value!r}: must be {kind} > 0")


def _describe(exc: BaseException, where: str, retries: int) -> str:
    status = getattr(exc, "status_code", None)
    message = getattr(exc, "message", None) or str(exc)
    # the SDK retries connection errors, 408, 409, 429 and 5xx; others fail at once
    retried = status is None or status in (408, 409, 429) or status >= 500
    attempts = retries + 1 if retried else 1
    if status is not None:
        return f"model API {where} answered HTTP {status} after {attempts} attempt(s): {message}"
    return f"model API {where} failed after {attempts} attempt(s): {type(exc).__name__}: {message}"


class _ChatAgent:
    def __init__(
        self,
        *,
        model: str,
        base_url: str | None,
        api_key: str | None,
        tools: Sequence[Callable[..., Any] | FunctionTool],
        system: str | None,
        max_steps: int,
        max_retries: int,
        timeout: float,
        include_usage: bool,
        options: Mapping[str, Any],
        client: AsyncOpenAI | None,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.api_key = api_key
        self.tools = [t if isinstance(t, FunctionTool) else FunctionTool(t) for t in tools]
        self.by_name = {t.name: t for t in self.tools}
        if len(self.by_name) != len(self.tools):
            raise ValueError(f"invalid tools: two tools share a name ({[*self.by_name]})")
        self.system = system
        self.max_steps = max_steps
        self.max_retries = max_retries
        self.timeout = timeout
        self.include_usage = include_usage
        self.options = dict(options)
        self.client = client

    def _where(self, client: AsyncOpenAI) -> str:
        return f"{client.base_url} (model {self.model!r})"

    async def __call__(self, turn: Turn) -> None:
        import openai

        async with AsyncExitStack() as stack:
            client = self.client
            if client is None:
                client = openai.AsyncOpenAI(
                    base_url=self.base_url,
                    api_key=self.api_key,
                    max_retries=self.max_retries,
                    timeout=self.timeout,
                )
                await stack.enter_async_context(client)
            pending = turn.pending_tool_calls  # a resumed turn: settle them first
            if pending:
                await self._run_calls(turn, pending)
            for _ in range(self.max_steps):
                calls = await self._step(client, turn)
                if not calls:
                    await turn.reply()
                    return
                await self._run_tools(turn, calls)
        raise StepLimitExceeded(
            f"the model {self.model!r} still called tools after max_steps={self.max_steps} "
            "model calls"
        )

    def _request(self, turn: Turn) -> dict[str, Any]:
        messages = turn.model_messages()
        if self.system:
            messages.insert(0, {"role": "system", "content": self.system})
        request: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True}
        if self.tools:
            request["tools"] = [t.spec() for t in self.tools]
        if self.include_usage:
            request["stream_options"] = {"include_usage": True}
        request.update(self.options)
        return request

    async def _step(self, client: AsyncOpenAI, turn: Turn) -> list[_Pending]:
        """One model call, streamed into the turn; returns the tool calls it made."""
        import openai

        try:
            stream = await client.chat.completions.create(**self._request(turn))
        except openai.APIError as exc:  # status, connection and timeout errors
            raise ModelAPIError(_describe(exc, self._where(client), client.max_retries)) from exc
        pending: dict[int, _Pending] = {}
        try:
            async for chunk in stream:
                if chunk.usage is not None:
                    u = chunk.usage
                    await turn.usage(
                        prompt_tokens=u.prompt_tokens,
                        completion_tokens=u.completion_tokens,
                        total_tokens=u.total_tokens,
                    )
                for choice in chunk.choices[:1]:
                    await self._delta(turn, choice.delta, pending)
        except (openai.APIError, ValueError) as exc:  # ValueError: a chunk that is not JSON
            raise ModelAPIError(
                f"model API {self._where(client)} broke its stream: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            # Close the HTTP response at once, also when the turn is being cancelled.
            with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                await stream.close()
        return [pending[i] for i in sorted(pending)]

    async def _delta(self, turn: Turn, delta: Any, pending: dict[int, _Pending]) -> None:
        # vLLM, DeepSeek and llama.cpp name it reasoning_content; Ollama and others reasoning
        reasoning = getattr(delta, "reasoning_content", None) or getattr(delta, "reasoning", None)
        if isinstance(reasoning, str) and reasoning:
            await turn.reasoning(reasoning)
        if delta.content:
            await turn.token(delta.content)
        for tc in delta.tool_calls or ():
            call = pending.setdefault(tc.index, _Pending())
            if tc.id and not call.id:
                call.id = tc.id
            if tc.function is not None:
                if tc.function.name and not call.name:
                    call.name = tc.function.name
                if tc.function.arguments:
                    call.arguments += tc.function.arguments

    async def _run_tools(self, turn: Turn, calls: list[_Pending]) -> None:
        """Start every call first (one assistant message lists them all), then run them
        concurrently; each result lands in call order."""
        started = []
        for c in calls:
            call_id = c.id or "call_" + uuid.uuid4().hex[:24]
            started.append(await turn.start_tool(c.name or "unnamed", c.arguments, call_id=call_id))
        await self._run_calls(turn, started)

    async def _run_calls(self, turn: Turn, calls: list[ToolCall]) -> None:
        async with anyio.create_task_group() as tg:
            for call in calls:
                tg.start_soon(self._run_one, turn, call)

    async def _run_one(self, turn: Turn, call: ToolCall) -> None:
        """Run the call through the turn's tool ledger (:meth:`Turn.run_tool`): the
        model's call id is the same on every attempt, so a resumed turn never runs a
        completed call again."""
        tool = self.by_name.get(call.name)
        if tool is None:
            known = ", ".join(self.by_name) or "none"
            await call.fail(f"unknown tool {call.name!r}; the tools are: {known}")
            return
        await turn.run_tool(call, tool)


def openai_chat(
    *,
    model: str,
    base_url: str | None = None,
    api_key: str | None = None,
    tools: Sequence[Callable[..., Any] | FunctionTool] = (),
    system: str | None = None,
    max_steps: int = 10,
    max_retries: int = 3,
    timeout: float = 600.0,
    include_usage: bool = True,
    options: Mapping[str, Any] | None = None,
    client: AsyncOpenAI | None = None,
) -> Agent:
    """An agent that runs a Chat Completions tool loop with the official ``openai`` SDK
    (extra ``openai``), against OpenAI or any compatible server.

    Each model call sends :meth:`Turn.model_messages` (after ``system``) and streams the
    answer into the turn: content deltas become ``token`` events, reasoning deltas
    (``reasoning_content`` or ``reasoning``) ``reasoning`` events, the usage chunk a
    ``usage`` event. Tool calls, whose arguments arrive as deltas across chunks, are
    started together once the answer is complete (``tool.started``, one assistant
    message listing them all), run concurrently, and completed with their real results
    (``tool.completed``; a tool that raises, an unknown tool or arguments that are not
    a JSON object give the model an ``Error: …`` result instead). The loop ends when
    the model answers without tool calls.

    Rate limits (429), 408/409 and 5xx answers and connection errors are retried by the
    SDK with exponential backoff (0.5 s doubling to at most 8 s, or the server's
    ``Retry-After`` up to 60 s), ``max_retries`` times; then the turn ends with an
    ``error`` event (:class:`ModelAPIError`). Cancelling the turn closes the HTTP stream
    at once.

    :param model: the model name the server knows.
    :param base_url: the API's URL (``…/v1``); default ``OPENAI_BASE_URL`` or OpenAI's.
    :param api_key: default ``OPENAI_API_KEY``; local servers take any value.
    :param tools: plain functions (sync or async; see
        :func:`~runtime.agents.function_tool`) or :class:`FunctionTool` objects.
    :param system: a system prompt sent first on every call (not stored in the session).
    :param max_steps: model calls per turn (> 0); a model still calling tools after
        that ends the turn with :class:`StepLimitExceeded`.
    :param max_retries: retries of a failed request (>= 0).
    :param timeout: seconds a request may take (> 0).
    :param include_usage: ask for the usage chunk (``stream_options``).
    :param options: more arguments of ``chat.completions.create`` (``temperature``,
        ``max_tokens``, ``extra_body`` for fields the SDK does not know …).
    :param client: an ``openai.AsyncOpenAI`` to use instead of one per turn (then
        ``base_url``, ``api_key``, ``max_retries`` and ``timeout`` are its own).
    :raises ImportError: if the ``openai`` package is not installed.
    :raises ValueError: for a bad setting or tool, naming it.
    :raises TypeError: for a tool whose parameters a JSON object cannot fill.
    """
    try:
        import openai  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "runtime.agents.openai_chat needs the 'openai' package: pip install 'runtime[openai]'"
        ) from exc
    if not isinstance(model, str) or not model:
        raise ValueError(f"invalid model {model!r}: must be a non-empty string")
    _positive(max_steps, "max_steps", integer=True)
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"invalid max_retries {max_retries!r}: must be an integer >= 0")
    _positive(timeout, "timeout", integer=False)
    return _ChatAgent(
        model=model,
        base_url=base_url,
        api_key=api_key,
        tools=tools,
        system=system,
        max_steps=max_steps,
        max_retries=max_retries,
        timeout=float(timeout),
        include_usage=include_usage,
        options=options or {},
        client=client,
    )
