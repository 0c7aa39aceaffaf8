"""Schemathesis against the served ``/openapi.json``: requests generated from the
document, valid and invalid, never get a server error (5xx) and never leave a
traceback in the server log.

The server is real: ``python -m runtime serve`` (uvicorn) on 127.0.0.1 over a
FileStore, with the echo agent. Examples are bounded so CI stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from sse_helpers import REPO, ServerProcess, free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("schemathesis")
    agent = f"{REPO}/examples/echo_agent.py:agent"
    proc = ServerProcess(tmp / "store", free_port(), tmp / "server.log", agent=agent)
    proc.start()
    try:
        yield proc
    finally:
        proc.terminate()


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_no_server_errors(server: ServerProcess, mode: schemathesis.GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) >= 7, [o.label for o in operations]

    @given(case=schema.as_strategy(generation_mode=mode))
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    def call(case: Any) -> None:
        case.call_and_validate(base_url=server.base_url, checks=[not_a_server_error], timeout=30)

    call()
    assert "Traceback" not in server.output(), server.output()[-3000:]
