"""The PostgreSQL server of the tests: ``RUNTIME_TEST_POSTGRES_DSN`` (``.ci/run`` starts
a throwaway cluster and exports it). Without it the tests that need it skip with a
reason, except under ``CI=true``, where they fail: CI must run them."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

DSN_VAR = "RUNTIME_TEST_POSTGRES_DSN"


def server_from_env(var: str, what: str) -> str:
    """The value of ``var``, or skip (fail under ``CI=true``) naming the variable."""
    value = os.environ.get(var)
    if not value:
        reason = f"{var} is not set: no {what} server for this test"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " (CI=true: .ci/run must start one)")
        pytest.skip(reason)
    return value


def postgres_dsn() -> str:
    """The DSN, or skip (fail under ``CI=true``) naming the variable."""
    return server_from_env(DSN_VAR, "PostgreSQL")


def new_schema() -> str:
    """A fresh schema name, so each store starts on empty tables."""
    return "t_" + uuid.uuid4().hex[:16]


@asynccontextmanager
async def dropped_after(dsn: str, schemas: list[str]) -> AsyncIterator[None]:
    """Drop every schema in ``schemas`` (filled while the block runs) at the end."""
    try:
        yield
    finally:
        if schemas:
            import asyncpg

            con = await asyncpg.connect(dsn)
            try:
                for schema in schemas:
                    await con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await con.close()
