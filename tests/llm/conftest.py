"""Fixtures of the LLM-agent tests: the chat-completions stand-in in a real uvicorn
process on 127.0.0.1 (see ``chat_standin.py``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class StandIn:
    """A running stand-in server: ``url`` is its ``…/v1`` base URL."""

    def __init__(self, port: int) -> None:
        self.root = f"http://127.0.0.1:{port}"
        self.url = self.root + "/v1"

    def script(self, *responses: dict[str, Any]) -> None:
        """Queue the answers to the next requests (and clear the request log)."""
        httpx.post(self.root + "/_script", json=list(responses)).raise_for_status()

    async def ascript(self, *responses: dict[str, Any]) -> None:
        """:meth:`script` from async code."""
        async with httpx.AsyncClient() as client:
            (await client.post(self.root + "/_script", json=list(responses))).raise_for_status()

    async def arequests(self) -> list[dict[str, Any]]:
        """:meth:`requests` from async code."""
        async with httpx.AsyncClient() as client:
            result: list[dict[str, Any]] = (await client.get(self.root + "/_requests")).json()
            return result

    async def adisconnects(self) -> dict[str, int]:
        """:meth:`disconnects` from async code."""
        async with httpx.AsyncClient() as client:
            result: dict[str, int] = (await client.get(self.root + "/_disconnects")).json()
            return result

    def requests(self) -> list[dict[str, Any]]:
        """``[{"status", "body"}, …]`` of every request since the last :meth:`script`."""
        result: list[dict[str, Any]] = httpx.get(self.root + "/_requests").json()
        return result

    def disconnects(self) -> dict[str, int]:
        """``{"disconnects", "left"}``: streams the client closed early, answers left."""
        result: dict[str, int] = httpx.get(self.root + "/_disconnects").json()
        return result


@pytest.fixture(scope="session")
def standin() -> Iterator[StandIn]:
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "chat_standin:app", "--app-dir", str(HERE)),
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    server = StandIn(port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(server.root + "/_disconnects", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"the stand-in server did not start: {err}") from None
                time.sleep(0.05)
        yield server
    finally:
        proc.kill()
        proc.wait()
