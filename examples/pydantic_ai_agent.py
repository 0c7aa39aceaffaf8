"""A pydantic-ai agent run by the runtime, through ``runtime.adapters.pydantic_ai``.

It runs offline: pydantic-ai's own ``FunctionModel`` stands in for a real model and
plays a scripted one that calls the ``find_modules`` tool once, then streams an answer
built from the tool's result. The tool is real (it reads the standard library's module
names). Swap the model for a real one (``Agent("openai:gpt-5.2", ...)``) and nothing
else changes. Run it::

    pip install -e '.[cli,pydantic-ai]'
    runtime run examples/pydantic_ai_agent.py:agent "Which modules mention xml?"
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

from _stdlib_modules import answer, find_modules, keyword
from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelRequest, ToolReturnPart, UserPromptPart
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, FunctionModel

from runtime.adapters.pydantic_ai import agent as runtime_agent


async def scripted_model(
    messages: list[ModelMessage], info: AgentInfo
) -> AsyncIterator[str | dict[int, DeltaToolCall]]:
    """Call ``find_modules`` for the prompt's last word; once it answered, say so."""
    prompts = [
        str(part.content)
        for message in messages
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, UserPromptPart)
    ]
    word = keyword(prompts[-1])
    last = messages[-1]
    returns = [p for p in last.parts if isinstance(p, ToolReturnPart)]
    if returns:
        for piece in answer(word, str(returns[0].content)):
            yield piece
        return
    call_id = "call_" + uuid.uuid4().hex[:24]
    args = json.dumps({"word": word})
    yield {0: DeltaToolCall(name="find_modules", json_args=args, tool_call_id=call_id)}


assistant = Agent(
    FunctionModel(stream_function=scripted_model, model_name="scripted"),
    instructions="Answer questions about the Python standard library; use the tools.",
)
assistant.tool_plain(find_modules)

#: The runtime agent: ``runtime run examples/pydantic_ai_agent.py:agent "..."``.
agent = runtime_agent(assistant)
