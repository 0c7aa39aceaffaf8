"""The OpenAPI 3.1 description of the HTTP API, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from ._chat_openapi import CHAT_SCHEMAS, chat_paths

__all__ = ["openapi_document"]

_ERROR = {"$ref": "#/components/schemas/Error"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_UNAUTHORIZED = _error("Missing or wrong bearer token (only when a token is configured).")
_BAD_ID = _error("Invalid session id (must match [A-Za-z0-9_-]{1,64}).")
_NO_SESSION = _error("No such session.")
_UNAVAILABLE = _error("The runtime is not running or the store failed.")

_SESSION_ID = {
    "name": "session_id",
    "in": "path",
    "required": True,
    "description": "Session id.",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
}
_STREAM_ID = {
    "name": "stream_id",
    "in": "path",
    "required": True,
    "description": "Stream id, as returned by POST /api/sessions/{session_id}/turns.",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string", "description": "Stable machine code."},
            "detail": {"type": "string", "description": "What was wrong, naming the value."},
            "active_stream_id": {"type": "string", "description": "409 only."},
            "session_id": {"type": "string", "description": "409 only."},
        },
    },
    "Message": {
        "type": "object",
        "description": "An OpenAI chat-completions message plus timestamp and markers.",
        "required": ["role"],
        "properties": {
            "role": {"type": "string"},
            "content": {"type": ["string", "null"]},
            "tool_calls": {"type": "array", "items": {"type": "object"}},
            "tool_call_id": {"type": "string"},
            "name": {"type": "string"},
            "timestamp": {"type": ["number", "null"]},
        },
        "additionalProperties": True,
    },
    "SessionMeta": {
        "type": "object",
        "required": ["session_id", "title", "created_at", "updated_at", "message_count"],
        "properties": {
            "session_id": {"type": "string"},
            "title": {"type": "string"},
            "model": {"type": ["string", "null"]},
            "model_provider": {"type": ["string", "null"]},
            "workspace": {"type": ["string", "null"]},
            "created_at": {"type": "number", "description": "Epoch seconds."},
            "updated_at": {"type": "number", "description": "Epoch seconds."},
            "active_stream_id": {"type": ["string", "null"]},
            "pending_user_message": {"type": ["string", "null"]},
            "pending_started_at": {"type": ["number", "null"]},
            "metadata": {"type": "object"},
            "message_count": {"type": "integer"},
        },
    },
    "Session": {
        "allOf": [
            {"$ref": "#/components/schemas/SessionMeta"},
            {
                "type": "object",
                "properties": {
                    "messages": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/Message"},
                        "description": "Absent when metadata_only=1.",
                    }
                },
            },
        ]
    },
    "SessionPage": {
        "type": "object",
        "required": ["sessions", "next_cursor"],
        "properties": {
            "sessions": {"type": "array", "items": {"$ref": "#/components/schemas/SessionMeta"}},
            "next_cursor": {"type": ["string", "null"]},
        },
    },
    "Status": {
        "type": "object",
        "required": ["active_stream_id", "live", "pending_user_message", "pending_started_at"],
        "properties": {
            "active_stream_id": {"type": ["string", "null"]},
            "live": {"type": "boolean"},
            "pending_user_message": {"type": ["string", "null"]},
            "pending_started_at": {"type": ["number", "null"]},
            "interrupted": {
                "description": "The last turn's process stopped: resumable with POST "
                "/api/sessions/{session_id}/resume (null otherwise).",
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["stream_id", "attempt", "attempts_left"],
                        "properties": {
                            "stream_id": {"type": "string"},
                            "attempt": {"type": "integer", "minimum": 0},
                            "attempts_left": {"type": "integer", "minimum": 0},
                        },
                    },
                ],
            },
        },
    },
    "TurnResumed": {
        "type": "object",
        "required": ["stream_id", "session_id"],
        "properties": {
            "stream_id": {"type": "string", "description": "The SAME stream as before."},
            "session_id": {"type": "string"},
        },
    },
    "NewSession": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "title": {"type": "string", "minLength": 1, "maxLength": 200},
            "session_id": {
                "type": "string",
                "pattern": "^[A-Za-z0-9_-]{1,64}$",
                "description": "Client-chosen id (409 session_exists if taken).",
            },
        },
    },
    "Rename": {
        "type": "object",
        "additionalProperties": False,
        "required": ["title"],
        "properties": {"title": {"type": "string", "minLength": 1, "maxLength": 200}},
    },
    "StreamList": {
        "type": "object",
        "required": ["streams"],
        "properties": {
            "streams": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["stream_id", "user_message", "started_at", "live"],
                    "properties": {
                        "stream_id": {"type": "string"},
                        "user_message": {"type": ["string", "null"]},
                        "started_at": {"type": ["number", "null"]},
                        "live": {"type": "boolean"},
                    },
                },
            }
        },
    },
    "NewTurn": {
        "type": "object",
        "additionalProperties": False,
        "required": ["message"],
        "properties": {
            "message": {"type": "string", "minLength": 1, "description": "Not only whitespace."},
            "metadata": {"type": ["object", "null"], "description": "turn.metadata"},
            "config": {"type": ["object", "null"], "description": "turn.config"},
        },
    },
    "TurnStarted": {
        "type": "object",
        "required": ["stream_id", "session_id", "pending_started_at"],
        "properties": {
            "stream_id": {"type": "string"},
            "session_id": {"type": "string"},
            "pending_started_at": {"type": ["number", "null"], "description": "Epoch seconds."},
        },
    },
    "CancelResult": {
        "type": "object",
        "required": ["stream_id", "session_id", "cancelled"],
        "properties": {
            "stream_id": {"type": "string"},
            "session_id": {"type": "string"},
            "cancelled": {"type": "boolean", "description": "False if the stream had ended."},
        },
    },
    "Event": {
        "type": "object",
        "description": "The JSON in each SSE data: line.",
        "required": ["seq", "stream_id", "session_id", "type", "data", "ts"],
        "properties": {
            "seq": {"type": "integer", "minimum": 1},
            "stream_id": {"type": "string"},
            "session_id": {"type": "string"},
            "type": {
                "type": "string",
                "enum": [
                    "stream.started",
                    "stream.resumed",
                    "token",
                    "reasoning",
                    "tool.started",
                    "tool.completed",
                    "message",
                    "checkpoint",
                    "title",
                    "usage",
                    "error",
                    "cancelled",
                    "done",
                    "stream.end",
                ],
            },
            "data": {"type": "object"},
            "ts": {"type": "number", "description": "Epoch seconds."},
        },
    },
}

_SSE_DESCRIPTION = """\
Server-Sent Events. First `retry: <ms>`, then one message per event:
`id: <seq>`, `event: <type>`, `data: <Event JSON>`; a `: heartbeat` comment while idle.
The response ends after `stream.end`. Resume with the `Last-Event-ID` header (wins) or
`?after_seq=`: exactly the events with a greater seq, no duplicates, no gaps. A stream
whose process died (server restart) replays its persisted events, then `error`
`{"type": "interrupted"}`, then `stream.end`. Disconnecting never cancels the turn."""


def _paths(auth: bool) -> dict[str, Any]:
    sec_events: list[dict[str, list[str]]] = [{"bearer": []}, {"query_token": []}] if auth else []
    return {
        "/api/sessions": {
            "post": {
                "operationId": "create_session",
                "summary": "Create a session (kept in memory until its first turn).",
                "requestBody": {
                    "required": False,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/NewSession"}}
                    },
                },
                "responses": {
                    "201": _json("The new session.", {"$ref": "#/components/schemas/Session"}),
                    "400": _error("Body is not a JSON object, has unknown fields or a bad title."),
                    "401": _UNAUTHORIZED,
                    "413": _error("Body larger than 1 MiB."),
                    "415": _error("Body not sent as Content-Type: application/json."),
                },
            },
            "get": {
                "operationId": "list_sessions",
                "summary": "List sessions, newest first; empty Untitled sessions are hidden.",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "description": "next_cursor of the previous page.",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _json("One page.", {"$ref": "#/components/schemas/SessionPage"}),
                    "400": _error("Invalid limit or cursor."),
                    "401": _UNAUTHORIZED,
                },
            },
        },
        "/api/sessions/{session_id}": {
            "parameters": [_SESSION_ID],
            "get": {
                "operationId": "get_session",
                "summary": "Get a session; a stale stream is repaired through a full load.",
                "parameters": [
                    {
                        "name": "metadata_only",
                        "in": "query",
                        "description": "1/true: omit messages.",
                        "schema": {"type": "string", "enum": ["0", "1", "true", "false"]},
                    }
                ],
                "responses": {
                    "200": _json("The session.", {"$ref": "#/components/schemas/Session"}),
                    "400": _error("Invalid session id or metadata_only value."),
                    "401": _UNAUTHORIZED,
                    "404": _NO_SESSION,
                },
            },
            "patch": {
                "operationId": "rename_session",
                "summary": "Rename a session.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Rename"}}
                    },
                },
                "responses": {
                    "200": _json("The session.", {"$ref": "#/components/schemas/SessionMeta"}),
                    "400": _error("Invalid session id or title."),
                    "401": _UNAUTHORIZED,
                    "404": _NO_SESSION,
                    "409": _error("A live stream owns the session; rename it after the turn."),
                },
            },
            "delete": {
                "operationId": "delete_session",
                "summary": "Delete a session (never resurrected by recovery).",
                "responses": {
                    "204": {"description": "Deleted."},
                    "400": _BAD_ID,
                    "401": _UNAUTHORIZED,
                    "404": _NO_SESSION,
                    "409": _error("A live stream owns the session; cancel it first."),
                },
            },
        },
        "/api/sessions/{session_id}/streams": {
            "parameters": [_SESSION_ID],
            "get": {
                "operationId": "session_streams",
                "summary": "The session's streams (turns), oldest first.",
                "responses": {
                    "200": _json("Streams.", {"$ref": "#/components/schemas/StreamList"}),
                    "400": _BAD_ID,
                    "401": _UNAUTHORIZED,
                    "404": _NO_SESSION,
                },
            },
        },
        "/api/sessions/{session_id}/status": {
            "parameters": [_SESSION_ID],
            "get": {
                "operationId": "session_status",
                "summary": "Stream status of a session.",
                "responses": {
                    "200": _json("Status.", {"$ref": "#/components/schemas/Status"}),
                    "400": _BAD_ID,
                    "401": _UNAUTHORIZED,
                    "404": _NO_SESSION,
                },
            },
        },
        "/api/sessions/{session_id}/turns": {
            "parameters": [_SESSION_ID],
            "post": {
                "operationId": "start_turn",
                "summary": "Send a user message; the agent runs in the background.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/NewTurn"}}
                    },
                },
                "responses": {
                    "202": _json(
                        "Started; follow Location (the events URL).",
                        {"$ref": "#/components/schemas/TurnStarted"},
                    ),
                    "200": {
                        "description": "With Accept: text/event-stream: the turn's events "
                        "at once, as GET /api/streams/{stream_id}/events sends them.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "400": _error("Invalid session id, or body/message invalid."),
                    "401": _UNAUTHORIZED,
                    "404": _NO_SESSION,
                    "409": _error("Busy: a live stream owns the session (see active_stream_id)."),
                    "413": _error("Body larger than 1 MiB."),
                    "415": _error("Body not sent as Content-Type: application/json."),
                },
            },
        },
        "/api/sessions/{session_id}/resume": {
            "parameters": [_SESSION_ID],
            "post": {
                "operationId": "resume_turn",
                "summary": "Continue the session's interrupted turn (same stream, next attempt).",
                "responses": {
                    "202": _json(
                        "Resumed; follow Location with Last-Event-ID to go on where you were.",
                        {"$ref": "#/components/schemas/TurnResumed"},
                    ),
                    "400": _BAD_ID,
                    "401": _UNAUTHORIZED,
                    "404": _NO_SESSION,
                    "409": _error(
                        "session_busy: a live stream owns the session; nothing_to_resume: "
                        "the last turn is not an interrupted one."
                    ),
                },
            },
        },
        "/api/streams/{stream_id}/events": {
            "parameters": [_STREAM_ID],
            "get": {
                "operationId": "stream_events",
                "summary": "Follow a stream as Server-Sent Events (resumable).",
                "description": _SSE_DESCRIPTION,
                "security": sec_events,
                "parameters": [
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "description": "Resume after this seq (wins over after_seq).",
                        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                    },
                    {
                        "name": "after_seq",
                        "in": "query",
                        "description": "Resume after this seq.",
                        "schema": {"type": "integer", "minimum": 0},
                    },
                    {
                        "name": "token",
                        "in": "query",
                        "description": "The API token, for EventSource (cannot send headers).",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": _SSE_DESCRIPTION,
                        "content": {
                            "text/event-stream": {
                                "schema": {"type": "string"},
                                "itemSchema": {"$ref": "#/components/schemas/Event"},
                            }
                        },
                    },
                    "204": {"description": "The stream ended and has no event after the seq."},
                    "400": _error("Invalid stream id, Last-Event-ID or after_seq."),
                    "401": _UNAUTHORIZED,
                    "404": _error("No live, retained or persisted stream with this id."),
                    "410": _error("The events after the seq are no longer retained."),
                },
            },
        },
        "/api/streams/{stream_id}/cancel": {
            "parameters": [_STREAM_ID],
            "post": {
                "operationId": "cancel_stream",
                "summary": "Cancel a live turn (partial output kept); returns after its save.",
                "responses": {
                    "200": _json("Result.", {"$ref": "#/components/schemas/CancelResult"}),
                    "400": _error("Invalid stream id."),
                    "401": _UNAUTHORIZED,
                    "404": _error("No such stream."),
                },
            },
        },
        "/": {
            "get": {
                "operationId": "demo_page",
                "summary": "The demo page (HTML).",
                "security": [],
                "responses": {"200": {"description": "HTML", "content": {"text/html": {}}}},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "security": [],
                "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})},
            }
        },
    }


def openapi_document(server_url: str = "/", *, auth: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document.

    :param server_url: where the app is mounted (``root_path`` or ``/``).
    :param auth: whether a bearer token is configured (then ``/api`` requires it).
    """
    from .. import __version__

    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "runtime HTTP API",
            "version": __version__,
            "description": (
                "Sessions, turns and resumable Server-Sent Events of an agent runtime. "
                "Errors are JSON {error, detail}."
            ),
        },
        "servers": [{"url": server_url}],
        "paths": {**_paths(auth), **chat_paths()},
        "components": {
            "schemas": {**_SCHEMAS, **CHAT_SCHEMAS},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "query_token": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
    }
    if auth:
        doc["security"] = [{"bearer": []}]
    return doc
