"""A LangGraph graph run by the runtime, through ``runtime.adapters.langgraph``.

The graph is the usual tool loop (model node ⇄ ``ToolNode``). It runs offline:
LangChain's own ``GenericFakeChatModel`` stands in for a real chat model, scripted to
call the ``find_modules`` tool once and then stream an answer built from its result.
The tool is real (it reads the standard library's module names). Swap the model for a
real one (``ChatOpenAI(model=...).bind_tools(tools)``) and nothing else changes. Run it::

    pip install -e '.[cli,langgraph]'
    runtime run examples/langgraph_agent.py:agent "Which modules mention xml?"
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from _stdlib_modules import answer, find_modules, keyword
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from runtime.adapters.langgraph import agent as runtime_agent


class ScriptedChatModel(GenericFakeChatModel):
    """LangChain's fake chat model, answering from the conversation instead of a list:
    a call to ``find_modules`` for the prompt's last word, then the answer."""

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        word = keyword(next(m.text for m in reversed(messages) if isinstance(m, HumanMessage)))
        last = messages[-1]
        if isinstance(last, ToolMessage):
            reply = AIMessage("".join(answer(word, last.text)))
        else:
            call = {
                "id": "call_" + uuid.uuid4().hex[:24],
                "type": "function",
                "function": {"name": "find_modules", "arguments": json.dumps({"word": word})},
            }
            # an OpenAI model's message carries its calls like this; the fake model
            # streams them in additional_kwargs
            reply = AIMessage("", additional_kwargs={"tool_calls": [call]})
        return ChatResult(generations=[ChatGeneration(message=reply)])


tools = [tool(find_modules)]
model = ScriptedChatModel(messages=iter(()))


async def call_model(state: MessagesState) -> dict[str, Any]:
    return {"messages": [await model.ainvoke(state["messages"])]}


builder = StateGraph(MessagesState)
builder.add_node("model", call_model)
builder.add_node("tools", ToolNode(tools))
builder.add_edge(START, "model")
builder.add_conditional_edges("model", tools_condition)
builder.add_edge("tools", "model")
graph = builder.compile(name="stdlib")

#: The runtime agent: ``runtime run examples/langgraph_agent.py:agent "..."``.
agent = runtime_agent(graph)
