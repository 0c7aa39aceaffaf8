"""A real server: ``python -m runtime serve`` (uvicorn) in a subprocess on 127.0.0.1
with a FileStore in ``tmp_path``, read with httpx-sse over real sockets.

Covers dropping the connection mid-stream and resuming with ``Last-Event-ID`` (each
seq exactly once, in order; the turn is not cancelled), SIGKILL of the server mid-turn
and a restart on the same store (missed durable events, then ``error``
``interrupted``, then ``stream.end``), graceful SIGTERM shutdown (live turns get
``--shutdown-grace`` seconds, then are cancelled with partial output kept, or with
``--resume auto`` suspended and finished by the restarted server), and the CLI's
one-line startup errors.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from httpx_sse import connect_sse
from sse_agents import token_text
from sse_helpers import AGENT_SPEC, REPO, ServerProcess, free_port

Event = dict[str, Any]


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Servers a test starts; every one still running is SIGKILLed at the end."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.kill()


def start(servers: list[ServerProcess], tmp_path: Path, port: int, *extra: str) -> ServerProcess:
    log = tmp_path / f"server-{len(servers)}.log"
    server = ServerProcess(tmp_path / "store", port, log, "--heartbeat", "0.5", *extra)
    servers.append(server)
    return server.start()


def start_turn(client: httpx.Client, message: str) -> tuple[str, str]:
    sid = client.post("/api/sessions").json()["session_id"]
    r = client.post(f"/api/sessions/{sid}/turns", json={"message": message})
    assert r.status_code == 202, r.text
    return sid, r.json()["stream_id"]


def read_events(
    client: httpx.Client,
    stream_id: str,
    last_id: int,
    until: Callable[[Event], bool] = lambda e: False,
    on_event: Callable[[Event], None] = lambda e: None,
) -> list[Event]:
    """Follow the stream from ``last_id`` (sent as ``Last-Event-ID``) until ``until(event)``
    is true (then drop the connection) or the server ends the response."""
    headers = {"Last-Event-ID": str(last_id)} if last_id else {}
    out: list[Event] = []
    url = f"/api/streams/{stream_id}/events"
    try:
        with connect_sse(client, "GET", url, headers=headers) as source:
            if source.response.status_code == 204:  # nothing after last_id: it had ended
                return out
            assert source.response.status_code == 200, source.response.read()
            for sse in source.iter_sse():
                if not sse.data:  # the retry hint
                    continue
                if sse.event == "lagged":  # the server cut this slow reader off
                    break
                event: Event = orjson.loads(sse.data)
                assert sse.id == str(event["seq"])
                assert sse.event == event["type"]
                out.append(event)
                on_event(event)
                if until(event):
                    break  # leaving the block closes the connection mid-stream
    except httpx.RemoteProtocolError:
        pass  # the server went away mid-response (SIGKILL / shutdown)
    return out


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def assert_consecutive(events: list[Event], first: int = 1) -> None:
    assert [e["seq"] for e in events] == list(range(first, first + len(events)))


def without_ts(event: Event) -> Event:
    return {k: v for k, v in event.items() if k != "ts"}


def tokens(events: list[Event]) -> list[str]:
    return [e["data"]["text"] for e in events if e["type"] == "token"]


def test_drop_and_resume_gets_each_event_once_and_never_cancels_the_turn(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    server = start(servers, tmp_path, free_port())
    n = 40
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        sid, stream_id = start_turn(client, f"tokens={n} delay=0.02 tool_every=7")
        seen: list[Event] = []
        for drop_at in (4, 12, 20):
            last = seen[-1]["seq"] if seen else 0
            seen += read_events(client, stream_id, last, until=lambda e, d=drop_at: e["seq"] >= d)
        # Nobody is connected now; the turn still runs to its end.
        wait_until(
            lambda: client.get(f"/api/sessions/{sid}/status").json()["active_stream_id"] is None,
            "the turn to finish with no subscriber",
        )
        seen += read_events(client, stream_id, seen[-1]["seq"])
        assert_consecutive(seen)
        assert tokens(seen) == [token_text(i) for i in range(1, n + 1)]
        assert [e["type"] for e in seen][-2:] == ["done", "stream.end"]
        assert not any(e["type"] == "cancelled" for e in seen)
        messages = client.get(f"/api/sessions/{sid}").json()["messages"]
        text = "".join(m.get("content") or "" for m in messages if m["role"] == "assistant")
        assert text == "".join(token_text(i) for i in range(1, n + 1))
        assert not any(m.get("_partial") or m.get("_error") for m in messages)


def test_sigkill_mid_turn_then_restart_replays_durable_events_then_interrupted(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    port = free_port()
    server = start(servers, tmp_path, port, "--checkpoint-interval", "0.05")
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        sid, stream_id = start_turn(client, "tokens=2000 delay=0.01 tool_every=3")
        # Client A reads a little and drops.
        a_seen = read_events(client, stream_id, 0, until=lambda e: e["seq"] >= 5)
        a_last = a_seen[-1]["seq"]
        # Client B follows until a checkpoint has persisted well past A, then the
        # server is killed with SIGKILL (no shutdown, no final save).
        b_seen = read_events(
            client,
            stream_id,
            0,
            until=lambda e: e["type"] == "checkpoint" and e["data"]["persisted_seq"] >= a_last + 10,
        )
        server.kill()
    persisted = b_seen[-1]["data"]["persisted_seq"]
    b_last = b_seen[-1]["seq"]
    assert_consecutive(b_seen)

    server = start(servers, tmp_path, port)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        resumed = read_events(client, stream_id, a_last)
        assert_consecutive(resumed, a_last + 1)
        *replayed, interrupted, end = resumed
        # Everything up to the last checkpoint survived, identical to what B saw live.
        assert len(replayed) >= persisted - a_last
        by_seq = {e["seq"]: e for e in b_seen}
        for event in replayed:
            if event["seq"] in by_seq:
                assert event == by_seq[event["seq"]]
        assert interrupted["type"] == "error"
        assert interrupted["data"]["type"] == "interrupted"
        assert end["type"] == "stream.end"
        # Replaying again gives the same answer (no hang, no duplicates); only the
        # timestamps of the two closing events, made at replay time, differ.
        again = read_events(client, stream_id, a_last)
        assert [without_ts(e) for e in again] == [without_ts(e) for e in resumed]
        # B resumes from its own Last-Event-ID, possibly past everything persisted
        # (a live client runs ahead of checkpoints): still gapless, still an ending.
        b_rest = read_events(client, stream_id, b_last)
        assert_consecutive(b_rest, b_last + 1)
        assert [(e["type"], e["data"].get("type")) for e in b_rest[-2:]] == [
            ("error", "interrupted"),
            ("stream.end", None),
        ]
        status = client.get(f"/api/sessions/{sid}/status").json()
        assert status["live"] is False


def test_graceful_shutdown_lets_the_turn_finish_and_a_restart_resumes(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    port = free_port()
    server = start(servers, tmp_path, port, "--shutdown-grace", "60")
    n = 60  # 3 s of streaming: far longer than sse-starlette's 0.5 s shutdown poll
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        sid, stream_id = start_turn(client, f"tokens={n} delay=0.05")

        def stop_server(event: Event) -> None:
            if event["seq"] == 5:
                assert server.proc is not None
                server.proc.terminate()  # SIGTERM while the turn runs and B is connected

        seen = read_events(client, stream_id, 0, on_event=stop_server)
        # Waits for the process: grace, final save, exit 0 (a graceful stop).
        assert server.terminate() == 0, server.output()
    assert seen[-1]["type"] != "stream.end"  # the server closed the stream early

    server = start(servers, tmp_path, port)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        seen += read_events(client, stream_id, seen[-1]["seq"])
        assert_consecutive(seen)
        assert tokens(seen) == [token_text(i) for i in range(1, n + 1)]
        assert [e["type"] for e in seen][-2:] == ["done", "stream.end"]
        status = client.get(f"/api/sessions/{sid}/status").json()
        assert status["active_stream_id"] is None


def test_shutdown_grace_zero_cancels_keeping_partial_output(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    port = free_port()
    server = start(servers, tmp_path, port, "--shutdown-grace", "0")
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        sid, stream_id = start_turn(client, "tokens=100000 delay=0.01")
        seen = read_events(client, stream_id, 0, until=lambda e: e["seq"] >= 4)
        assert server.terminate() == 0, server.output()
    server = start(servers, tmp_path, port)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        seen += read_events(client, stream_id, seen[-1]["seq"])
        assert_consecutive(seen)
        assert [e["type"] for e in seen][-2:] == ["cancelled", "stream.end"]
        streamed = "".join(tokens(seen))
        messages = client.get(f"/api/sessions/{sid}").json()["messages"]
        partial = [m for m in messages if m.get("_partial")]
        assert len(partial) == 1
        assert partial[0]["content"] == streamed
        assert sum(1 for m in messages if m.get("type") == "cancelled") == 1


def test_sigterm_with_resume_auto_suspends_the_turn_and_the_restart_finishes_it(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    """``--resume auto``: a graceful shutdown keeps the live turn for a resume instead
    of cancelling it. Everything it streamed is durable when the server has exited (the
    checkpoint interval is 30 s: the suspension saved it); the restarted server resumes
    it by itself; a client reconnecting with ``Last-Event-ID`` gets each seq once, one
    ``stream.resumed``, and the turn's end; the transcript holds the whole reply once,
    with no ``cancelled`` or ``interrupted`` marker."""
    import anyio

    from runtime import FileStore

    port = free_port()
    options = ("--resume", "auto", "--checkpoint-interval", "30")
    server = start(servers, tmp_path, port, *options, "--shutdown-grace", "0")
    n = 60
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        sid, stream_id = start_turn(client, f"tokens={n} delay=0.03")
        seen = read_events(client, stream_id, 0, until=lambda e: e["seq"] >= 6)
        assert server.terminate() == 0, server.output()
    assert "suspended stream" in server.output()

    async def stored() -> tuple[Any, list[Any]]:
        store = FileStore(tmp_path / "store")
        await store.open()
        try:
            return await store.load(sid), await store.load_events(sid, stream_id)
        finally:
            await store.aclose()

    session, durable = anyio.run(stored)
    assert session.active_stream_id == stream_id
    assert not any(m.get("type") in ("cancelled", "interrupted") for m in session.messages)
    assert durable[-1].seq >= seen[-1]["seq"] and durable[-1].type == "token"
    partial = [m for m in session.messages if m.get("_partial")]
    assert partial[0]["content"] == "".join(e.data["text"] for e in durable if e.type == "token")

    server = start(servers, tmp_path, port, *options)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        seen += read_events(client, stream_id, seen[-1]["seq"])
        seqs = [e["seq"] for e in seen]
        assert seqs == sorted(set(seqs))  # each once, in order
        resumed = [e for e in seen if e["type"] == "stream.resumed"]
        assert len(resumed) == 1 and resumed[0]["data"]["attempt"] == 1
        assert resumed[0]["data"]["last_durable_seq"] == durable[-1].seq
        assert [e["type"] for e in seen][-2:] == ["done", "stream.end"]
        assert seen[-1]["data"]["outcome"] == "done"
        messages = client.get(f"/api/sessions/{sid}").json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[-1]["content"] == "".join(token_text(i) for i in range(1, n + 1))
    assert not any(m.get("_partial") or m.get("_error") for m in messages)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_reports_startup_errors_in_one_line(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    bad = run_cli("serve", "no/such/file.py:agent", "--store", str(tmp_path / "x"))
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines()[-1].startswith("runtime: error: invalid agent")

    port = free_port()
    start(servers, tmp_path, port)
    # A second server on the same store: the FileStore lock refuses it.
    locked = run_cli(
        "serve", AGENT_SPEC, "--port", str(free_port()), "--store", str(tmp_path / "store")
    )
    assert locked.returncode == 1
    last = locked.stderr.strip().splitlines()[-1]
    assert last.startswith("runtime: error: StoreLocked"), locked.stderr
    # A second server on the same port: uvicorn cannot bind.
    busy = run_cli("serve", AGENT_SPEC, "--port", str(port), "--store", str(tmp_path / "other"))
    assert busy.returncode == 1
    assert busy.stderr.strip().splitlines()[-1].startswith("runtime: error: could not start")

    bad_grace = run_cli("serve", AGENT_SPEC, "--shutdown-grace", "-1")
    assert bad_grace.returncode == 2
    assert "--shutdown-grace" in bad_grace.stderr


def test_token_auth_over_http_and_no_token_in_the_access_log(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    server = start(servers, tmp_path, free_port(), "--token", "tok-123", "--log-level", "info")
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        assert client.get("/api/sessions").status_code == 401
        auth = {"Authorization": "Bearer tok-123"}
        sid = client.post("/api/sessions", headers=auth).json()["session_id"]
        r = client.post(f"/api/sessions/{sid}/turns", json={"message": "tokens=2"}, headers=auth)
        stream_id = r.json()["stream_id"]
        url = f"/api/streams/{stream_id}/events?token=tok-123"
        with connect_sse(client, "GET", url) as source:
            types = [sse.event for sse in source.iter_sse() if sse.data]
        assert types[-1] == "stream.end"
    server.kill()
    log = server.output()
    assert "/events?token=***" in log
    assert "tok-123" not in log


def _raw_sse_get(port: int, path: str) -> socket.socket:
    """A GET on a socket whose receive buffer is tiny: a client that will not read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    return sock


def _read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything the server sends; whether it closed the connection (EOF) or ended
    the chunked response, before ``timeout`` seconds of silence."""
    sock.settimeout(timeout)
    data = bytearray()
    try:
        while not data.endswith(b"\r\n0\r\n\r\n"):
            piece = sock.recv(1 << 16)
            if not piece:
                return bytes(data), True
            data += piece
    except TimeoutError:
        return bytes(data), False
    return bytes(data), True


def _sse_messages(raw: bytes) -> list[dict[str, str]]:
    """The complete SSE messages of a raw HTTP/1.1 chunked response (a cut-off last
    chunk and a message without its blank line are dropped, as a browser would)."""
    body = bytearray()
    rest = raw.split(b"\r\n\r\n", 1)[1]
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        size = int(size_line, 16)
        body += rest[:size]
        rest = rest[size + 2 :]
    messages = []
    for block in body.decode(errors="replace").split("\n\n")[:-1]:
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if "data" in fields:
            messages.append(fields)
    return messages


def test_a_reader_that_stops_reading_is_cut_off_with_a_lagged_ending_and_can_resume(
    tmp_path: Path, servers: list[ServerProcess]
) -> None:
    """A client that reads nothing blocks every write once the socket buffers are full.
    With ``--send-timeout 1`` its response ends (a ``lagged`` event naming the seq to
    resume after, when it still fits); a reconnect with the last id it got receives the
    rest exactly once, up to ``stream.end``. Without the timeout the server held the
    reader, its subscription and its buffers forever."""
    port = free_port()
    server = start(servers, tmp_path, port, "--send-timeout", "1")
    n = 40_000  # ~7 MB of SSE: far more than the socket buffers hold
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        sid, stream_id = start_turn(client, f"tokens={n}")
        wait_until(
            lambda: client.get(f"/api/sessions/{sid}/status").json()["active_stream_id"] is None,
            "the turn to finish",
        )
        sock = _raw_sse_get(port, f"/api/streams/{stream_id}/events")
        time.sleep(3)  # read nothing for longer than the send timeout
        raw, ended = _read_until_closed(sock, timeout=20)
        sock.close()
        assert ended, "the server still holds the stalled response"
        got = _sse_messages(raw)
        events = [orjson.loads(m["data"]) for m in got if "id" in m]
        assert events, "nothing was sent before the stall"
        assert all(e["type"] != "stream.end" for e in events), "the stalled reader was not cut off"
        assert_consecutive(events)
        lagged = [orjson.loads(m["data"]) for m in got if m.get("event") == "lagged"]
        if lagged:  # sent if the socket still had room for it
            assert lagged[0]["resume_after_seq"] >= events[-1]["seq"]
        # A reconnect reads ~7 MB too: on a loaded machine it may itself stall past the
        # send timeout and end ``lagged``; a client then reconnects from its last id.
        rest: list[Event] = []
        for _ in range(20):
            rest += read_events(client, stream_id, (events + rest)[-1]["seq"])
            if rest and rest[-1]["type"] == "stream.end":
                break
    assert_consecutive(events + rest)
    assert [e["type"] for e in rest][-2:] == ["done", "stream.end"]
    assert tokens(events + rest) == [token_text(i) for i in range(1, n + 1)]
