"""An OpenAI Agents SDK agent run by the runtime, through ``runtime.adapters.openai_agents``.

It runs offline: the SDK's own ``agents.testing.ScriptedModel`` stands in for a real
model and plays a scripted one that calls the ``find_modules`` tool once, then answers
from the tool's result. The tool is real (it reads the standard library's module
names). Drop ``model=`` (the SDK's default OpenAI model) or name a real one and nothing
else changes. Run it::

    pip install -e '.[cli,openai-agents]'
    runtime run examples/openai_agents_agent.py:agent "Which modules mention xml?"
"""

from __future__ import annotations

import uuid

from _stdlib_modules import answer, find_modules, keyword
from agents import Agent, RunConfig, function_tool
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call
from agents.usage import Usage

from runtime.adapters.openai_agents import agent as runtime_agent


def respond(call: ModelCall) -> ModelStep:
    """One scripted model call: ``find_modules`` for the prompt's last word, then the
    answer. Each call queues the next, so the script never runs out."""
    model.enqueue(ModelStep.respond(respond))
    items = (
        call.input if isinstance(call.input, list) else [{"role": "user", "content": call.input}]
    )
    prompt = next(i["content"] for i in reversed(items) if i.get("role") == "user")
    word = keyword(str(prompt))
    usage = Usage(requests=1, input_tokens=len(items) * 20, output_tokens=12, total_tokens=0)
    last = items[-1]
    if last.get("type") == "function_call_output":
        text = "".join(answer(word, str(last["output"])))
        return ModelStep(output=[assistant_message(text)], usage=usage)
    call_id = "call_" + uuid.uuid4().hex[:24]
    return ModelStep(
        output=[function_call("find_modules", {"word": word}, call_id=call_id)], usage=usage
    )


model = ScriptedModel([ModelStep.respond(respond)])

assistant = Agent(
    name="stdlib",
    instructions="Answer questions about the Python standard library; use the tools.",
    model=model,
    tools=[function_tool(find_modules)],
)

#: The runtime agent: ``runtime run examples/openai_agents_agent.py:agent "..."``.
#: (Tracing is off: offline there is no API to export traces to.)
agent = runtime_agent(assistant, run_config=RunConfig(tracing_disabled=True))
