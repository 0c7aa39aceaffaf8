"""The OpenAPI paths of the chat-protocol routes (Vercel AI SDK, AG-UI), merged into
the document served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

__all__ = ["CHAT_SCHEMAS", "chat_paths"]

_ERROR = {"$ref": "#/components/schemas/Error"}
_CHAT_ID = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "description": "Chat id (the session id).",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
}
_UI_STREAM = {
    "description": "Vercel AI SDK UI message stream v1 (header x-vercel-ai-ui-message-stream: "
    "v1): data: <chunk JSON> per chunk, then data: [DONE].",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}
_OBJECT_OR_NULL = {"type": ["object", "null"]}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _json_body(name: str) -> dict[str, Any]:
    schema = {"$ref": f"#/components/schemas/{name}"}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_UNAUTHORIZED = _error("Missing or wrong bearer token (only when a token is configured).")


_CHAT_REQUEST = {
    "type": "object",
    "required": ["id", "messages"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
        "messages": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "object"},
            "description": "UI messages; the last one (role user) starts the turn.",
        },
        "trigger": {"enum": ["submit-message", "regenerate-message"]},
        "messageId": {"type": ["string", "null"]},
        "metadata": _OBJECT_OR_NULL,
        "config": _OBJECT_OR_NULL,
    },
}
_RUN_AGENT_INPUT = {
    "type": "object",
    "required": ["threadId", "runId", "messages"],
    "description": "AG-UI RunAgentInput; the last message (role user) starts the turn.",
    "properties": {
        "threadId": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
        "runId": {"type": "string", "minLength": 1},
        "messages": {"type": "array", "minItems": 1, "items": {"type": "object"}},
        "state": {},
        "tools": {"type": "array"},
        "context": {"type": "array"},
        "forwardedProps": _OBJECT_OR_NULL,
    },
}


#: Component schemas of the chat-protocol request bodies.
CHAT_SCHEMAS = {"ChatRequest": _CHAT_REQUEST, "RunAgentInput": _RUN_AGENT_INPUT}


def chat_paths() -> dict[str, Any]:
    """The ``paths`` entries of ``/api/chat…`` and ``/api/agui``."""
    return {
        "/api/chat": {
            "post": {
                "operationId": "ai_sdk_chat",
                "summary": "AI SDK: start a turn with the last user message and stream it.",
                "requestBody": _json_body("ChatRequest"),
                "responses": {
                    "200": _UI_STREAM,
                    "400": _error("Invalid body, id or messages."),
                    "401": _UNAUTHORIZED,
                    "409": _error("Busy: a live turn owns the chat."),
                    "413": _error("Body larger than 1 MiB."),
                },
            }
        },
        "/api/chat/{session_id}": {
            "parameters": [_CHAT_ID],
            "get": {
                "operationId": "ai_sdk_messages",
                "summary": "AI SDK: the stored transcript as UI messages {id, messages}.",
                "responses": {
                    "200": {"description": "{id, messages}", "content": {"application/json": {}}},
                    "400": _error("Invalid chat id."),
                    "401": _UNAUTHORIZED,
                    "404": _error("No such chat."),
                },
            },
        },
        "/api/chat/{session_id}/stream": {
            "parameters": [_CHAT_ID],
            "get": {
                "operationId": "ai_sdk_resume",
                "summary": "AI SDK: replay the active turn (useChat resume); 204 if none.",
                "responses": {
                    "200": _UI_STREAM,
                    "204": {"description": "The chat has no active turn."},
                    "400": _error("Invalid chat id."),
                    "401": _UNAUTHORIZED,
                },
            },
        },
        "/api/chat/{session_id}/stop": {
            "parameters": [_CHAT_ID],
            "post": {
                "operationId": "ai_sdk_stop",
                "summary": "AI SDK: cancel the active turn (partial output kept).",
                "responses": {
                    "200": {
                        "description": "{id, stream_id, cancelled}",
                        "content": {"application/json": {}},
                    },
                    "400": _error("Invalid chat id."),
                    "401": _UNAUTHORIZED,
                    "404": _error("No such chat."),
                },
            },
        },
        "/api/agui": {
            "post": {
                "operationId": "agui_run",
                "summary": "AG-UI: run the agent on RunAgentInput, answering AG-UI events.",
                "requestBody": _json_body("RunAgentInput"),
                "responses": {
                    "200": {
                        "description": "AG-UI events, data: <event JSON> each.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "400": _error("Invalid body, threadId, runId or messages."),
                    "401": _UNAUTHORIZED,
                    "409": _error("Busy: a live turn owns the thread."),
                    "413": _error("Body larger than 1 MiB."),
                },
            }
        },
    }
