"""Run a compiled LangGraph graph as a runtime agent (extra ``langgraph``).

::

    from langgraph.prebuilt import create_react_agent
    from runtime.adapters.langgraph import agent as runtime_agent

    graph = create_react_agent(model, tools=[search])      # compiled, no checkpointer
    agent = runtime_agent(graph)                            # runtime run app.py:agent "..."

Each turn calls ``graph.astream({"messages": history + [the user's message]},
stream_mode=["messages", "updates", "custom"])``; the history is
``turn.model_messages()`` converted by LangChain's ``convert_to_messages``. The graph's
state must hold its conversation under ``input_key`` (``"messages"``, as
``MessagesState`` and ``create_react_agent`` do). The runtime's session is the
conversation's memory, so the graph is compiled without a checkpointer.

======================================================  ====================================
LangGraph stream                                        runtime
======================================================  ====================================
``messages``: text of an ``AIMessageChunk``             ``token``
``messages``: its ``reasoning`` content blocks          ``reasoning``
``updates``: an ``AIMessage`` with ``tool_calls``       ``tool.started`` per call (its id)
``updates``/``messages``: a ``ToolMessage``             ``tool.completed`` (``status="error"``
                                                        completes the call with that error)
``updates``: an ``AIMessage`` without tool calls        the assistant message is finished
``updates``: ``AIMessage.usage_metadata``               ``usage``
``custom``: a ``str`` from ``get_stream_writer()``      ``reasoning`` (other values go to
                                                        ``on_custom``, if given)
======================================================  ====================================
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Mapping
from contextlib import aclosing
from typing import Any, cast

try:
    from langchain_core.messages import (
        AIMessage,
        AIMessageChunk,
        BaseMessage,
        HumanMessage,
        ToolMessage,
        convert_to_messages,
    )
    from langchain_core.runnables import RunnableConfig
    from langgraph.pregel import Pregel
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "runtime.adapters.langgraph needs langgraph: pip install 'runtime[langgraph]'"
    ) from exc

from .._runner import Agent, Turn
from ._common import ToolCalls, history_and_prompt, json_ready, report_usage

__all__ = ["agent"]

#: ``async def on_custom(turn, chunk)``: what to do with a ``custom`` stream chunk.
CustomHandler = Callable[[Turn, Any], Awaitable[None]]


def agent(
    graph: Pregel[Any, Any, Any, Any],
    *,
    input_key: str = "messages",
    config: RunnableConfig | None = None,
    nodes: Collection[str] | None = None,
    on_custom: CustomHandler | None = None,
) -> Agent:
    """A runtime agent that streams ``graph`` for each turn.

    :param graph: a compiled graph (``StateGraph(...).compile()``,
        ``create_react_agent(...)``) without a checkpointer.
    :param input_key: the state key of the conversation's messages.
    :param config: passed to every ``astream`` call (``recursion_limit``, callbacks, ...).
    :param nodes: stream tokens only from chat models running in these nodes (``None``:
        all nodes); a model called inside a tool would otherwise stream its text too.
    :param on_custom: called with each ``custom`` chunk that is not a ``str``.
    :raises TypeError: if ``graph`` is not a compiled LangGraph graph.
    :raises ValueError: if the graph has a checkpointer (the session is the memory:
        both would keep the conversation, and it would be sent twice).
    """
    if not isinstance(graph, Pregel):
        raise TypeError(f"invalid graph {graph!r}: must be a compiled LangGraph graph (Pregel)")
    if graph.checkpointer not in (None, False):
        raise ValueError(
            f"invalid graph {graph.name!r}: compile it without a checkpointer; the runtime "
            "session keeps the conversation and sends it with every turn"
        )
    only = frozenset(nodes) if nodes is not None else None

    async def run(turn: Turn) -> None:
        history, prompt = history_and_prompt(turn)
        messages = convert_to_messages(history)
        if prompt is not None:  # None: a resumed turn continues its durable history
            messages.append(HumanMessage(prompt))
        mapper = _StreamMapper(turn, input_key, only, on_custom)
        stream = cast(  # an async generator: aclosing() closes it on cancellation
            "AsyncGenerator[tuple[str, Any], None]",
            graph.astream(
                {input_key: messages}, config, stream_mode=["messages", "updates", "custom"]
            ),
        )
        async with aclosing(stream):
            async for mode, chunk in stream:
                await mapper.on_chunk(mode, chunk)
        await turn.reply()

    run.__name__ = run.__qualname__ = f"langgraph_agent[{graph.name}]"
    return run


class _StreamMapper:
    """``astream`` chunks of one turn → the turn's calls."""

    def __init__(
        self,
        turn: Turn,
        input_key: str,
        nodes: frozenset[str] | None,
        on_custom: CustomHandler | None,
    ) -> None:
        self.turn = turn
        self.input_key = input_key
        self.nodes = nodes
        self.on_custom = on_custom
        self.calls = ToolCalls(turn)
        self.streamed: set[str] = set()  # ids of AI messages whose text was streamed
        self.streamed_unnamed = False  # text streamed by a chunk without an id

    async def on_chunk(self, mode: str, chunk: Any) -> None:
        if mode == "messages":
            message, metadata = chunk
            if self.nodes is None or metadata.get("langgraph_node") in self.nodes:
                await self.on_message_chunk(message)
        elif mode == "updates" and isinstance(chunk, Mapping):
            for update in chunk.values():
                for message in self.messages_of(update):
                    await self.on_update(message)
        elif mode == "custom":
            if isinstance(chunk, str):
                await self.turn.reasoning(chunk)
            elif self.on_custom is not None:
                await self.on_custom(self.turn, chunk)

    def messages_of(self, update: object) -> list[BaseMessage]:
        updates = update if isinstance(update, list | tuple) else [update]
        out: list[BaseMessage] = []
        for item in updates:
            value = item.get(self.input_key) if isinstance(item, Mapping) else None
            if isinstance(value, BaseMessage):
                out.append(value)
            elif isinstance(value, list | tuple):
                out.extend(m for m in value if isinstance(m, BaseMessage))
        return out

    async def on_message_chunk(self, message: BaseMessage) -> None:
        if isinstance(message, ToolMessage):
            await self.tool_result(message)
        elif isinstance(message, AIMessageChunk | AIMessage) and await self.emit_content(message):
            if message.id:
                self.streamed.add(message.id)
            else:
                self.streamed_unnamed = True

    async def emit_content(self, message: AIMessage) -> bool:
        """``reasoning`` for its reasoning content blocks, then ``token`` for its text;
        True if it emitted anything."""
        emitted = False
        for block in message.content_blocks:
            if block["type"] == "reasoning" and block.get("reasoning"):
                await self.turn.reasoning(str(block.get("reasoning")))
                emitted = True
        if message.text:
            await self.turn.token(message.text)
            emitted = True
        return emitted

    async def on_update(self, message: BaseMessage) -> None:
        if isinstance(message, ToolMessage):
            await self.tool_result(message)
            return
        if not isinstance(message, AIMessage):
            return  # the input's messages, or a node's own human/system messages
        streamed = message.id in self.streamed if message.id else self.streamed_unnamed
        self.streamed_unnamed = False
        if not streamed:
            await self.emit_content(message)
        usage = message.usage_metadata
        if usage:
            await report_usage(self.turn, usage.get("input_tokens"), usage.get("output_tokens"))
        if message.tool_calls:
            for call in message.tool_calls:
                await self.calls.start(call.get("id") or "", call["name"], call["args"])
        else:
            await self.turn.reply()

    async def tool_result(self, message: ToolMessage) -> None:
        call_id = message.tool_call_id
        if self.calls.known(call_id) and not self.calls.running(call_id):
            return  # seen in the other stream mode already
        name = message.name or "tool"
        if message.status == "error":
            await self.calls.fail(call_id, name, message.text)
            return
        content = message.content
        result = content if isinstance(content, str) else json_ready(content, lambda: message.text)
        await self.calls.finish(call_id, name, result)
