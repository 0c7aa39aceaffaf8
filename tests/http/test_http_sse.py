"""``GET /api/streams/{stream_id}/events`` over ASGI: the SSE wire format, resuming
with ``Last-Event-ID`` / ``?after_seq=``, bad resume points, heartbeats, disconnects,
fan-out, retention, and the replay of a stream whose process died.

httpx's ASGITransport returns a response once the app has finished it, which suits
finished streams; the heartbeat and disconnect tests drive the ASGI app directly
(``drive_asgi_get``) to see each chunk as it is sent.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from sse_helpers import drive_asgi_get, events_of, open_app, parse_sse

from runtime import Event, FileStore, MemoryStore, Session
from runtime.testing import Notify, Reasoning, Reply, SetTitle, Tool, Usage, WaitFor, scripted_agent

RICH_SCRIPT = [
    Reasoning("plan"),
    SetTitle("survey"),
    "Searching… ",
    Tool("grep", {"pattern": "TaskGroup"}, result={"hits": 12}),
    Usage(3, 4),
    Reply("Found 12."),
]


async def finished_stream(s: Any, message: str = "go") -> str:
    sid = (await s.client.post("/api/sessions")).json()["session_id"]
    r = await s.client.post(f"/api/sessions/{sid}/turns", json={"message": message})
    stream_id: str = r.json()["stream_id"]
    await s.runtime.wait_stream(stream_id)
    return stream_id


def assert_gapless(events: list[dict[str, Any]], first: int = 1) -> None:
    assert [e["seq"] for e in events] == list(range(first, first + len(events)))


async def test_wire_format_of_a_whole_stream() -> None:
    async with open_app(scripted_agent(RICH_SCRIPT), retry_ms=1234) as s:
        stream_id = await finished_stream(s)
        r = await s.client.get(f"/api/streams/{stream_id}/events")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-store"
        messages = parse_sse(r.text)
        assert messages[0].retry == 1234
        assert not messages[0].data_lines
        events = events_of(r.text)
        assert_gapless(events)
        types = [e["type"] for e in events]
        assert types[0] == "stream.started"
        assert types[-2:] == ["done", "stream.end"]
        for expected in (
            "reasoning",
            "title",
            "token",
            "tool.started",
            "tool.completed",
            "usage",
            "message",
        ):
            assert expected in types
        assert all(
            set(e) == {"seq", "stream_id", "session_id", "type", "data", "ts"} for e in events
        )
        assert {e["stream_id"] for e in events} == {stream_id}
        tool = next(e for e in events if e["type"] == "tool.completed")["data"]
        assert tool["result"] == {"hits": 12}
        assert tool["error"] is None
        # Each event is its own message: "id: <seq>" / "event: <type>" / "data: <json>".
        assert "id: 1\nevent: stream.started\ndata: {" in r.text


@pytest.mark.parametrize("k", [0, 1, 3, 6])
async def test_resume_with_last_event_id_gets_exactly_the_rest(k: int) -> None:
    async with open_app(scripted_agent(RICH_SCRIPT)) as s:
        stream_id = await finished_stream(s)
        full = events_of((await s.client.get(f"/api/streams/{stream_id}/events")).text)
        r = await s.client.get(
            f"/api/streams/{stream_id}/events", headers={"Last-Event-ID": str(k)}
        )
        rest = events_of(r.text)
        assert rest == full[k:]
        by_query = events_of(
            (await s.client.get(f"/api/streams/{stream_id}/events?after_seq={k}")).text
        )
        assert by_query == full[k:]


async def test_last_event_id_header_wins_over_after_seq() -> None:
    async with open_app() as s:
        stream_id = await finished_stream(s)
        r = await s.client.get(
            f"/api/streams/{stream_id}/events?after_seq=1", headers={"Last-Event-ID": "3"}
        )
        assert events_of(r.text)[0]["seq"] == 4
        # A blank header counts as absent (EventSource sends none before the first id).
        r = await s.client.get(
            f"/api/streams/{stream_id}/events?after_seq=2", headers={"Last-Event-ID": " "}
        )
        assert events_of(r.text)[0]["seq"] == 3


@pytest.mark.parametrize("bad", ["-1", "abc", "1.5", "+3", "0x10", "1e3", "9" * 19])
async def test_invalid_resume_point_is_400_before_the_stream(bad: str) -> None:
    async with open_app() as s:
        stream_id = await finished_stream(s)
        r = await s.client.get(f"/api/streams/{stream_id}/events", headers={"Last-Event-ID": bad})
        assert r.status_code == 400
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"] == "invalid_last_event_id"
        assert repr(bad) in r.json()["detail"]
        r = await s.client.get(f"/api/streams/{stream_id}/events", params={"after_seq": bad})
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_after_seq"


async def test_resume_at_or_past_the_end_of_a_finished_stream_is_204() -> None:
    """204 also tells a browser's EventSource to stop reconnecting."""
    async with open_app() as s:
        stream_id = await finished_stream(s)
        last = events_of((await s.client.get(f"/api/streams/{stream_id}/events")).text)[-1]
        for after in (last["seq"], last["seq"] + 10):
            r = await s.client.get(
                f"/api/streams/{stream_id}/events", headers={"Last-Event-ID": str(after)}
            )
            assert r.status_code == 204
            assert r.content == b""


async def test_resume_past_the_newest_event_of_a_live_stream_is_400() -> None:
    reached, go = anyio.Event(), anyio.Event()
    async with open_app(scripted_agent(["a", Notify(reached), WaitFor(go), Reply()])) as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        stream_id = (
            await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "x"})
        ).json()["stream_id"]
        await reached.wait()
        r = await s.client.get(f"/api/streams/{stream_id}/events", headers={"Last-Event-ID": "50"})
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_last_event_id"
        assert "50" in r.json()["detail"]
        go.set()


@pytest.mark.parametrize(
    ("stream_id", "status", "code"),
    [
        (f"{'0' * 16}.nosuchsession", 404, "stream_not_found"),
        ("abcdef.nosuchsession", 404, "stream_not_found"),
        ("bad%20id", 400, "invalid_stream_id"),
        ("a" * 200, 400, "invalid_stream_id"),
    ],
)
async def test_unknown_or_invalid_stream(stream_id: str, status: int, code: str) -> None:
    async with open_app() as s:
        r = await s.client.get(f"/api/streams/{stream_id}/events")
        assert r.status_code == status
        assert r.json()["error"] == code


async def test_heartbeat_comment_while_the_agent_is_quiet() -> None:
    reached, go = anyio.Event(), anyio.Event()
    agent = scripted_agent(["a", Notify(reached), WaitFor(go), Reply("b")])
    async with open_app(agent, heartbeat=0.01) as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        stream_id = (
            await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "x"})
        ).json()["stream_id"]
        await reached.wait()

        def on_chunk(chunk: bytes, disconnect: anyio.Event) -> None:
            if chunk.startswith(b": heartbeat"):
                go.set()  # only a heartbeat lets the agent finish

        status, chunks = await drive_asgi_get(s.app, f"/api/streams/{stream_id}/events", on_chunk)
        assert status == 200
        body = b"".join(chunks).decode()
        assert chunks[0].startswith(b"retry: ")
        assert ": heartbeat\n\n" in body
        events = events_of(body)
        assert_gapless(events)
        assert events[-1]["type"] == "stream.end"


async def test_client_disconnect_never_cancels_the_turn() -> None:
    reached, go = anyio.Event(), anyio.Event()
    agent = scripted_agent(["first ", Notify(reached), WaitFor(go), Reply("second")])
    async with open_app(agent) as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        stream_id = (
            await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "x"})
        ).json()["stream_id"]
        await reached.wait()

        def on_chunk(chunk: bytes, disconnect: anyio.Event) -> None:
            if b"event: token" in chunk:
                disconnect.set()  # the client goes away mid-stream

        status, chunks = await drive_asgi_get(s.app, f"/api/streams/{stream_id}/events", on_chunk)
        assert status == 200
        assert b"event: stream.end" not in b"".join(chunks)
        assert s.runtime.is_live(stream_id)  # the response ended, the turn did not
        go.set()
        await s.runtime.wait_stream(stream_id)
        messages = (await s.client.get(f"/api/sessions/{sid}")).json()["messages"]
        assert messages[-1]["content"] == "first second"
        assert not any(m.get("_partial") or m.get("type") == "cancelled" for m in messages)
        rest = events_of((await s.client.get(f"/api/streams/{stream_id}/events?after_seq=2")).text)
        assert [e["type"] for e in rest][-2:] == ["done", "stream.end"]


async def test_several_subscribers_get_the_same_events() -> None:
    reached, go = anyio.Event(), anyio.Event()
    agent = scripted_agent(["a", Notify(reached), WaitFor(go), "b", Reply("c")])
    async with open_app(agent) as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        stream_id = (
            await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "x"})
        ).json()["stream_id"]
        await reached.wait()
        bodies: list[str] = []

        async def subscribe(after: int) -> None:
            r = await s.client.get(f"/api/streams/{stream_id}/events?after_seq={after}")
            bodies.append(r.text)

        async with anyio.create_task_group() as tg:
            for after in (0, 0, 1):
                tg.start_soon(subscribe, after)
            await anyio.wait_all_tasks_blocked()
            go.set()
        streams = sorted((events_of(b) for b in bodies), key=len)
        assert streams[1] == streams[2]
        assert streams[0] == streams[1][1:]
        assert_gapless(streams[2])


async def test_finished_stream_is_replayed_from_the_store_after_retention(tmp_path: Path) -> None:
    async with open_app(
        scripted_agent(RICH_SCRIPT),
        store=FileStore(tmp_path),
        runtime_options={"event_retention": 0.0},
    ) as s:
        stream_id = await finished_stream(s)
        assert s.runtime.broker.expire() >= 0
        r = await s.client.get(f"/api/streams/{stream_id}/events")
        events = events_of(r.text)
        assert_gapless(events)
        assert [e["type"] for e in events][-2:] == ["done", "stream.end"]


async def dead_stream_store() -> tuple[MemoryStore, str]:
    """A store as a process that died mid-turn left it: pending fields set, three
    events persisted by its last checkpoint, no ``stream.end``."""
    store = MemoryStore()
    await store.open()
    sid = "deadsession"
    stream_id = f"{'d' * 16}.{sid}"
    started = time.time() - 3600
    session = Session(
        sid,
        messages=[{"role": "user", "content": "q", "timestamp": started}],
        active_stream_id=stream_id,
        pending_user_message="q",
        pending_started_at=started,
    )
    events = [
        Event(1, stream_id, sid, "stream.started", {"user_message": "q"}, started),
        Event(2, stream_id, sid, "token", {"text": "alpha "}, started + 1),
        Event(3, stream_id, sid, "token", {"text": "beta "}, started + 2),
    ]
    await store.save(session, events=events)
    return store, stream_id


@pytest.mark.parametrize("k", [0, 2, 3])
async def test_dead_stream_replays_durable_events_then_interrupted_then_end(k: int) -> None:
    store, stream_id = await dead_stream_store()
    async with open_app(store=store) as s:
        r = await s.client.get(
            f"/api/streams/{stream_id}/events", headers={"Last-Event-ID": str(k)}
        )
        assert r.status_code == 200
        events = events_of(r.text)
        assert_gapless(events, k + 1)
        tokens = [e["data"]["text"] for e in events if e["type"] == "token"]
        assert tokens == ["alpha ", "beta "][max(0, k - 1) :]
        assert events[-2]["type"] == "error"
        assert events[-2]["data"]["type"] == "interrupted"
        assert events[-1]["type"] == "stream.end"


async def test_dead_stream_resumed_past_its_last_checkpoint_still_ends() -> None:
    """A client may have seen live events that the dead process never persisted
    (checkpoints lag behind the live stream). Resuming from such a seq must still end
    with ``error`` ``interrupted`` and ``stream.end``, numbered after the client's
    Last-Event-ID, instead of answering 204 and leaving the client without an ending."""
    store, stream_id = await dead_stream_store()
    async with open_app(store=store) as s:
        r = await s.client.get(f"/api/streams/{stream_id}/events", headers={"Last-Event-ID": "7"})
        assert r.status_code == 200
        events = events_of(r.text)
        assert [(e["seq"], e["type"]) for e in events] == [(8, "error"), (9, "stream.end")]
        assert events[0]["data"]["type"] == "interrupted"


async def test_subscriber_behind_the_retained_window_gets_410() -> None:
    """The live log keeps ``max_events`` events; events older than that and never
    persisted (no checkpoint ran: no activity) cannot be replayed."""
    reached, go = anyio.Event(), anyio.Event()
    steps = [f"t{i} " for i in range(30)]
    agent = scripted_agent([*steps, Notify(reached), WaitFor(go), Reply()])
    async with open_app(agent, runtime_options={"max_events": 8}) as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        stream_id = (
            await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "x"})
        ).json()["stream_id"]
        await reached.wait()
        r = await s.client.get(f"/api/streams/{stream_id}/events", headers={"Last-Event-ID": "2"})
        assert r.status_code == 410
        assert r.json()["error"] == "subscriber_lagged"
        assert "seq 3" in r.json()["detail"]
        go.set()


async def test_resume_at_the_live_head_waits_and_follows_the_stream() -> None:
    """A client that reconnects with the newest seq of a live stream (it dropped right
    after the latest event, e.g. while a tool runs) is followed to ``stream.end``."""
    reached, go = anyio.Event(), anyio.Event()
    agent = scripted_agent(["a", Notify(reached), WaitFor(go), Reply("b")])
    async with open_app(agent) as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        stream_id = (
            await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "x"})
        ).json()["stream_id"]
        await reached.wait()
        head = s.runtime.broker.get(stream_id).last_seq

        def on_chunk(chunk: bytes, disconnect: anyio.Event) -> None:
            go.set()  # the agent goes on only once the response has started

        status, chunks = await drive_asgi_get(
            s.app,
            f"/api/streams/{stream_id}/events",
            on_chunk,
            headers=[(b"last-event-id", str(head).encode())],
        )
        assert status == 200
        events = events_of(b"".join(chunks).decode())
        assert events, "the response ended without following the stream"
        assert_gapless(events, first=head + 1)
        assert [e["type"] for e in events][-2:] == ["done", "stream.end"]


async def test_send_timeout_bounds_each_write_not_the_response() -> None:
    """``send_timeout`` limits how long one write may wait for the client, not how long
    the response lasts: a reader that takes 0.2 s over every chunk of a 2 s stream is
    never cut off with a 0.5 s timeout."""

    async def agent(turn: Any) -> None:
        for i in range(8):
            await turn.token(f"t{i} ")
            await anyio.sleep(0.25)

    async with open_app(agent, send_timeout=0.5) as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        stream_id = (
            await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "x"})
        ).json()["stream_id"]

        async def on_chunk(chunk: bytes, disconnect: anyio.Event) -> None:
            await anyio.sleep(0.2)  # slow, but each write finishes within the timeout

        started = time.monotonic()
        status, chunks = await drive_asgi_get(s.app, f"/api/streams/{stream_id}/events", on_chunk)
        assert time.monotonic() - started > 1.0  # the response outlived the timeout
        body = b"".join(chunks).decode()
        assert status == 200
        assert "event: lagged" not in body
        events = events_of(body)
        assert_gapless(events)
        assert events[-1]["type"] == "stream.end"


async def test_a_write_that_waits_past_send_timeout_ends_the_response_with_lagged() -> None:
    """One write that waits longer than ``send_timeout`` (a client that stopped reading)
    ends the response with a ``lagged`` event naming the seq to resume after; the turn
    goes on, and a reconnect from that seq gets the rest."""
    reached, go = anyio.Event(), anyio.Event()
    agent = scripted_agent(["a", "b", Notify(reached), WaitFor(go), Reply("c")])
    async with open_app(agent, send_timeout=0.3) as s:
        sid = (await s.client.post("/api/sessions")).json()["session_id"]
        stream_id = (
            await s.client.post(f"/api/sessions/{sid}/turns", json={"message": "x"})
        ).json()["stream_id"]
        await reached.wait()
        stalled = 0

        async def on_chunk(chunk: bytes, disconnect: anyio.Event) -> None:
            nonlocal stalled
            if b"event: token" in chunk and not stalled:
                stalled += 1
                await anyio.sleep(5)  # stops reading: the watchdog ends it long before

        with anyio.fail_after(4):
            status, chunks = await drive_asgi_get(
                s.app, f"/api/streams/{stream_id}/events", on_chunk
            )
        assert status == 200
        lagged = [m for m in parse_sse(b"".join(chunks).decode()) if m.event == "lagged"]
        assert len(lagged) == 1, chunks
        resume_after = lagged[0].data["resume_after_seq"]
        assert s.runtime.is_live(stream_id)  # the response ended, the turn did not
        go.set()
        await s.runtime.wait_stream(stream_id)
        r = await s.client.get(
            f"/api/streams/{stream_id}/events", headers={"Last-Event-ID": str(resume_after)}
        )
        rest = events_of(r.text)
        assert rest[0]["seq"] == resume_after + 1
        assert rest[-1]["type"] == "stream.end"


class SlowEventsStore(MemoryStore):
    """A MemoryStore whose durable-event reads take 1.5 s (longer than the SSE
    endpoint's first wait), as a loaded database may."""

    async def load_events(self, session_id: str, stream_id: str, after_seq: int = 0) -> list[Event]:
        await anyio.sleep(1.5)
        return await super().load_events(session_id, stream_id, after_seq)


async def test_a_slow_store_still_gets_404_and_204_before_the_headers() -> None:
    """A stream this process does not hold is looked up in the store; when that takes
    longer than the endpoint's first wait, the answer is still 404 for an unknown
    stream and 204 for a finished one with nothing after the resume point (before,
    the headers went out after the wait and the body ended empty: a browser's
    EventSource then reconnected forever)."""
    store = SlowEventsStore()
    async with open_app(store=store) as a, open_app(store=store) as b:  # b: another process
        stream_id = await finished_stream(a)
        whole = events_of((await a.client.get(f"/api/streams/{stream_id}/events")).text)
        unknown = f"{'0' * 16}.{stream_id.split('.', 1)[1]}"
        r = await b.client.get(f"/api/streams/{unknown}/events")
        assert r.status_code == 404
        assert r.json()["error"] == "stream_not_found"
        r = await b.client.get(
            f"/api/streams/{stream_id}/events", headers={"Last-Event-ID": str(whole[-1]["seq"])}
        )
        assert r.status_code == 204
        r = await b.client.get(f"/api/streams/{stream_id}/events", headers={"Last-Event-ID": "1"})
        assert r.status_code == 200
        assert events_of(r.text) == whole[1:]
