"""Adapters that run agents built with other frameworks as runtime agents.

Each submodule wraps one framework's agent into an ``async def agent(turn)`` callable,
so the runtime's checkpoints, cancellation, crash recovery and resumable streams work
for it unchanged. Each needs its framework, installed with an extra, and imports it
only when the submodule itself is imported (``import runtime`` stays light):

- ``runtime.adapters.pydantic_ai``: a ``pydantic_ai.Agent`` (``runtime[pydantic-ai]``);
- ``runtime.adapters.langgraph``: a compiled LangGraph graph (``runtime[langgraph]``);
- ``runtime.adapters.openai_agents``: an OpenAI Agents SDK ``agents.Agent``, and
  ``RuntimeSession``, the SDK's ``Session`` on a runtime store (``runtime[openai-agents]``).

Every adapter feeds the framework the session's history as ``turn.model_messages()``
(OpenAI chat-completions messages) converted to the framework's own message type, and
maps the framework's stream back: text to ``token``, reasoning to ``reasoning``, tool
calls to ``tool.started``/``tool.completed`` with the model's call ids, token counts
to ``usage``.
"""
