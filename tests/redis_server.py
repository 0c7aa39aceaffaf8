"""The Redis server of the tests: ``RUNTIME_TEST_REDIS_URL`` (``.ci/run`` starts a
throwaway server and exports it). Without it the tests that need it skip with a reason,
except under ``CI=true``, where they fail: CI must run them. Each test uses its own key
prefix (:func:`new_prefix`), so runs sharing one server never collide; nothing is
flushed."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from postgres_server import server_from_env

URL_VAR = "RUNTIME_TEST_REDIS_URL"


def redis_url() -> str:
    """The URL, or skip (fail under ``CI=true``) naming the variable."""
    return server_from_env(URL_VAR, "Redis")


def new_prefix() -> str:
    """A fresh key prefix, so each test starts on no keys."""
    return "t_" + uuid.uuid4().hex[:16]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivateRedis:
    """A ``redis-server`` of one test (no persistence) that the test may stop and start
    again on the same port, to see what Redis going away does."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            reason = "redis-server is not installed: cannot start a private Redis"
            if os.environ.get("CI") == "true":
                pytest.fail(reason + " (CI=true: .ci/run installs it)")
            pytest.skip(reason)
        self.binary = binary
        self.port = _free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.workdir / f"redis-{self.port}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGKILL the server (everything it held is gone: no persistence)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@contextmanager
def private_redis(workdir: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
