"""Fixtures of the HTTP tests (helpers live in ``sse_helpers.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their token explicitly; an exported RUNTIME_API_TOKEN must not leak in."""
    monkeypatch.delenv("RUNTIME_API_TOKEN", raising=False)
