"""LangGraph: a ``StateGraph`` whose ``messages`` channel is a list reduced with
``operator.add``, checkpointed by ``AsyncSqliteSaver`` on a file; one ``ainvoke`` per
appended message (W1-W3), and a node streaming custom events (W4).

Imports of ``langgraph`` happen inside the functions: the module loads without the
``bench`` extra.
"""

from __future__ import annotations

import asyncio
import operator
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, TypedDict

__all__ = ["LangGraphSession", "custom_stream_rate"]


class _State(TypedDict):
    messages: Annotated[list[dict[str, Any]], operator.add]


def _record(state: _State) -> dict[str, Any]:
    """The graph's one node: the input already went through the reducer; nothing to add."""
    return {}


class LangGraphSession:
    """One LangGraph thread on an ``AsyncSqliteSaver`` database file.

    Use as ``async with LangGraphSession(path) as lg:``.
    """

    def __init__(self, db_path: Path, thread_id: str = "bench") -> None:
        self.db_path = db_path
        self.config: Any = {"configurable": {"thread_id": thread_id}}
        self._cm: Any = None
        self.graph: Any = None

    async def __aenter__(self) -> LangGraphSession:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
        from langgraph.graph import END, START, StateGraph

        self._cm = AsyncSqliteSaver.from_conn_string(str(self.db_path))
        saver = await self._cm.__aenter__()
        builder = StateGraph(_State)
        builder.add_node("record", _record)
        builder.add_edge(START, "record")
        builder.add_edge("record", END)
        self.graph = builder.compile(checkpointer=saver)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._cm is not None:
            await self._cm.__aexit__(exc_type, exc, tb)
            self._cm = None

    async def append(self, messages: list[dict[str, Any]]) -> None:
        """One ``ainvoke`` that appends ``messages``; checkpoints are written when it returns."""
        await self.graph.ainvoke({"messages": messages}, self.config)

    async def load(self) -> list[dict[str, Any]]:
        """``aget_state`` of the thread: the whole message list."""
        state = await self.graph.aget_state(self.config)
        messages: list[dict[str, Any]] = state.values["messages"]
        return messages


async def custom_stream_rate(n: int, yield_every: int) -> float:
    """Events/s of ``n`` custom events from a node's stream writer to an ``astream``
    consumer (``stream_mode="custom"``); the node yields to the loop every
    ``yield_every`` events, like every producer of W4.

    :raises RuntimeError: if the consumer did not receive exactly ``n`` events.
    """
    import time

    from langgraph.config import get_stream_writer
    from langgraph.graph import END, START, StateGraph

    async def produce(state: _State) -> dict[str, Any]:
        writer = get_stream_writer()
        for i in range(1, n + 1):
            writer({"seq": i, "type": "token", "data": {"text": "tok "}})
            if i % yield_every == 0:
                await asyncio.sleep(0)
        return {}

    builder = StateGraph(_State)
    builder.add_node("produce", produce)
    builder.add_edge(START, "produce")
    builder.add_edge("produce", END)
    graph = builder.compile()
    received = 0
    t0 = time.perf_counter()
    async for _chunk in graph.astream({"messages": []}, stream_mode="custom"):
        received += 1
    elapsed = time.perf_counter() - t0
    if received != n:
        raise RuntimeError(f"LangGraph custom stream delivered {received} of {n} events")
    return n / elapsed
