"""A reconnect at the live head of a stream another node runs (two real ``runtime serve``
processes, one real PostgreSQL database, one real Redis; skipped without them, failing
under ``CI=true``): the response's headers must not wait for the stream's next event,
which may be a long tool call away (until the headers, no heartbeat can flow, and a
proxy's read timeout or the client's may end the request)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from httpx_sse import connect_sse
from test_two_nodes import start_turn
from test_two_nodes_redis import assert_once_each, clients, database, node_factory, read_events

__all__ = ["database", "node_factory"]  # the fixtures, shared with the two-node tests


def test_a_resume_at_the_live_head_on_another_node_starts_before_the_next_event(
    node_factory: Any,
) -> None:
    a, b = node_factory("a"), node_factory("b")
    with clients(a, b) as (ca, cb):
        sid = ca.post("/api/sessions").json()["session_id"]
        stream = start_turn(ca, sid, "tokens=2 delay=8")  # a token, then 8 s of nothing
        head: list[dict[str, Any]] = []
        with connect_sse(ca, "GET", f"/api/streams/{stream}/events") as src:
            for sse in src.iter_sse():
                if sse.data:
                    head.append(orjson.loads(sse.data))
                    if head[-1]["type"] == "checkpoint":  # the first token is saved
                        break
        assert [e["type"] for e in head] == ["stream.started", "token", "checkpoint"]
        headers = {"Last-Event-ID": str(head[-1]["seq"])}
        rest: list[dict[str, Any]] = []
        with connect_sse(cb, "GET", f"/api/streams/{stream}/events", headers=headers) as src:
            opened = time.time()
            assert src.response.status_code == 200
            for sse in src.iter_sse():
                if sse.data:
                    rest.append(orjson.loads(sse.data))
                    if rest[-1]["type"] == "stream.end":
                        break
        assert rest[0]["type"] == "token" and rest[0]["data"]["text"] == "w002 "
        assert opened < rest[0]["ts"]  # the headers came before A published it
        assert_once_each(head + rest)
        assert read_events(ca, stream) == head + rest
