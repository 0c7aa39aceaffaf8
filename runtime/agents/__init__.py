"""Ready-made agents for LLM APIs.

``openai_chat`` runs a Chat Completions tool loop on the official ``openai`` SDK (extra
``openai``: ``pip install 'runtime[openai]'``), imported only when it is called, so
``import runtime.agents`` needs neither ``openai`` nor ``pydantic``.
"""

from __future__ import annotations

from ._openai import ModelAPIError as ModelAPIError
from ._openai import StepLimitExceeded as StepLimitExceeded
from ._openai import openai_chat as openai_chat
from ._tools import FunctionTool as FunctionTool
from ._tools import function_tool as function_tool

__all__ = ["FunctionTool", "ModelAPIError", "StepLimitExceeded", "function_tool", "openai_chat"]
