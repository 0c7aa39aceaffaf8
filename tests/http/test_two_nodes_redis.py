"""Two real ``runtime serve`` processes (uvicorn) on one real PostgreSQL database and one
real Redis (``--event-log``; ``RUNTIME_TEST_POSTGRES_DSN`` and ``RUNTIME_TEST_REDIS_URL``,
skipped without them, failing under ``CI=true``): any node streams, resumes and cancels
any turn.

A turn run by A is streamed from B, dropped and resumed on B with ``Last-Event-ID``
(each seq once, ending with ``stream.end``); a second turn is busy (409) on B and
cancelled from B; in a third, A is SIGKILLed mid-turn and a client resuming on B gets
the events it missed, then ``error`` ``{"type": "interrupted"}`` once A's lease has
expired, then ``stream.end``, and nothing a checkpoint acknowledged is lost; a third node
started later replays every stream.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import connect_sse
from redis_server import new_prefix, redis_url
from sse_helpers import ServerProcess, free_port
from test_two_nodes import NODE_OPTIONS, clients, database, start_turn, wait_for

__all__ = ["database"]  # the fixture, shared with the PostgreSQL-only two-node test

Event = dict[str, Any]


@pytest.fixture
def node_factory(tmp_path: Path, database: str) -> Iterator[Any]:
    """Starts nodes on the test's database and Redis prefix; SIGKILLs them at the end."""
    options = (*NODE_OPTIONS, "--event-log", redis_url(), "--event-log-prefix", new_prefix())
    started: list[ServerProcess] = []

    def start(name: str) -> ServerProcess:
        node = ServerProcess(database, free_port(), tmp_path / f"node-{name}.log", *options)  # type: ignore[arg-type]
        started.append(node.start())
        return node

    yield start
    for node in started:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGCONT)
        node.kill()


def read_events(
    client: httpx.Client, stream_id: str, after: int = 0, limit: int = 0
) -> list[Event]:
    """SSE events after ``after`` until ``stream.end`` (or ``limit`` events, then the
    connection is dropped)."""
    headers = {"Last-Event-ID": str(after)} if after else {}
    out: list[Event] = []
    with connect_sse(client, "GET", f"/api/streams/{stream_id}/events", headers=headers) as src:
        assert src.response.status_code == 200, src.response.read()
        for sse in src.iter_sse():
            if not sse.data:
                continue
            event = orjson.loads(sse.data)
            assert sse.event == event["type"] and sse.id == str(event["seq"]), sse
            out.append(event)
            if event["type"] == "stream.end" or len(out) == limit:
                break
    return out


def assert_once_each(events: list[Event], first: int = 1) -> None:
    assert [e["seq"] for e in events] == list(range(first, first + len(events)))
    assert events[-1]["type"] == "stream.end"
    assert sum(e["type"] == "stream.end" for e in events) == 1


def test_any_node_streams_resumes_and_cancels_any_turn(node_factory: Any) -> None:
    a, b = node_factory("a"), node_factory("b")
    with clients(a, b) as (ca, cb):
        # 1. started on A, streamed from B, dropped and resumed on B
        sid = ca.post("/api/sessions").json()["session_id"]
        first = start_turn(ca, sid, "tokens=150 delay=0.01 tool_every=5")
        head = read_events(cb, first, limit=25)
        rest = read_events(cb, first, after=head[-1]["seq"])
        assert_once_each(head + rest)
        assert rest[-2]["type"] == "done"
        assert read_events(ca, first) == head + rest  # A's own log says the same

        # 2. a second turn: busy on B while A runs it, cancelled from B
        second = start_turn(ca, sid, "tokens=100000 delay=0.01 tool_every=5")
        read_events(cb, second, limit=20)
        assert cb.post(f"/api/sessions/{sid}/turns", json={"message": "x"}).status_code == 409
        status = cb.get(f"/api/sessions/{sid}/status").json()
        assert status["active_stream_id"] == second and status["live"] is True
        r = cb.post(f"/api/streams/{second}/cancel")
        assert r.status_code == 200 and r.json()["cancelled"] is True, r.text
        cancelled = read_events(cb, second)
        assert_once_each(cancelled)
        assert [e["type"] for e in cancelled[-2:]] == ["cancelled", "stream.end"]
        assert sum(e["type"] == "cancelled" for e in cancelled) == 1
        messages = cb.get(f"/api/sessions/{sid}").json()["messages"]
        turn2 = messages[[m.get("stream_id") for m in messages].index(second) :]
        # the streamed text is kept once: in the messages, as the tokens said it
        assert sum(bool(m.get("_partial")) for m in turn2) <= 1
        kept = "".join(
            m["content"] or "" for m in turn2 if m["role"] == "assistant" and not m.get("type")
        )
        assert kept == "".join(e["data"]["text"] for e in cancelled if e["type"] == "token")
        assert [m.get("type") for m in turn2].count("cancelled") == 1
        assert turn2[-1].get("type") == "cancelled"

        # 3. a third turn: A is SIGKILLed mid-turn; the client resumes on B
        third = start_turn(ca, sid, "the prompt tokens=3000 delay=0.01 tool_every=3")
        seen: list[Event] = []
        tools = 0
        checkpoint: Event | None = None
        with connect_sse(cb, "GET", f"/api/streams/{third}/events") as src:
            for sse in src.iter_sse():
                if sse.data:
                    seen.append(orjson.loads(sse.data))
                    tools += seen[-1]["type"] == "tool.completed"
                    if seen[-1]["type"] == "checkpoint" and tools >= 4:
                        checkpoint = seen[-1]
                        break
        assert checkpoint is not None
        a.kill()
        resumed = read_events(cb, third, after=seen[-1]["seq"])
        assert_once_each(seen + resumed)
        assert [e["type"] for e in resumed[-2:]] == ["error", "stream.end"]
        assert resumed[-2]["data"]["type"] == "interrupted"
        assert resumed[-1]["data"]["outcome"] == "interrupted"
        assert sum(e["type"] == "error" for e in seen + resumed) == 1
        repaired = wait_for(
            lambda: (s := cb.get(f"/api/sessions/{sid}").json())["active_stream_id"] is None and s,
            "B to repair the session",
        )
        turn3 = repaired["messages"][
            [m.get("stream_id") for m in repaired["messages"]].index(third) :
        ]
        # every message the checkpoint counted is there (plus the interrupted marker)
        assert len(repaired["messages"]) - 1 >= checkpoint["data"]["messages"]
        assert sum(m["role"] == "tool" for m in turn3) >= 4  # what the checkpoint had
        assert [m.get("type") for m in turn3].count("interrupted") == 1

        # 4. a node started later replays every stream
        c = node_factory("c")
        with httpx.Client(base_url=c.base_url, timeout=30) as cc:
            assert read_events(cc, first) == head + rest
            assert read_events(cc, second) == cancelled
            replay = read_events(cc, third)
            assert_once_each(replay)
            assert [e["type"] for e in replay[-2:]] == ["error", "stream.end"]
            assert [e["seq"] for e in replay] == [e["seq"] for e in seen + resumed]


def test_a_client_following_on_b_sees_the_owner_die_on_the_same_connection(
    node_factory: Any,
) -> None:
    """B's SSE clients wait on futures of B's view of the stream, which one reader task
    fills from Redis. A client that started on A and resumed on B with Last-Event-ID
    follows live when A is SIGKILLed: once B's read of Redis times out the client's
    wait ends, B asks the store, and the same connection gets the events it had not
    seen, ``error`` ``{"type": "interrupted"}`` once A's lease expired, and
    ``stream.end``; each seq once."""
    a, b = node_factory("a"), node_factory("b")
    with clients(a, b) as (ca, cb):
        sid = ca.post("/api/sessions").json()["session_id"]
        stream = start_turn(ca, sid, "tokens=3000 delay=0.01 tool_every=3")
        head = read_events(ca, stream, limit=20)  # on A, dropped
        rest: list[Event] = []
        tools, killed = 0, False
        headers = {"Last-Event-ID": str(head[-1]["seq"])}
        with connect_sse(cb, "GET", f"/api/streams/{stream}/events", headers=headers) as src:
            assert src.response.status_code == 200
            for sse in src.iter_sse():
                if not sse.data:
                    continue
                event = orjson.loads(sse.data)
                rest.append(event)
                tools += event["type"] == "tool.completed"
                if not killed and event["type"] == "checkpoint" and tools >= 4:
                    a.kill()  # while this client waits on B for the next event
                    killed = True
                if event["type"] == "stream.end":
                    break
        assert killed
        assert_once_each(head + rest)
        assert [e["type"] for e in rest[-2:]] == ["error", "stream.end"]
        assert rest[-2]["data"]["type"] == "interrupted"
        assert rest[-1]["data"]["outcome"] == "interrupted"
        assert sum(e["type"] == "error" for e in head + rest) == 1
        assert sum(e["type"] == "token" for e in rest) < 3000 - 20  # cut short by the kill
