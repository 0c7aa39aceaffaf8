"""The whole store conformance suite and the runner (see :mod:`runtime.testing`)."""

from __future__ import annotations

from collections.abc import Iterable

from ._delta_checks import DELTA_CHECKS
from ._lease_checks import LEASE_CHECKS
from ._ledger_checks import LEDGER_CHECKS
from ._store_checks import BASIC_CHECKS, Reopen, StoreCheck, StoreFactory

#: Every check, in a stable order; each is ``async (factory, *, reopen=None) -> None``.
STORE_CHECKS: tuple[StoreCheck, ...] = (
    *BASIC_CHECKS,
    *DELTA_CHECKS,
    *LEASE_CHECKS,
    *LEDGER_CHECKS,
)


async def run_store_conformance(
    factory: StoreFactory,
    *,
    reopen: Reopen | None = None,
    checks: Iterable[StoreCheck] = STORE_CHECKS,
) -> None:
    """Run every check (by default all of :data:`STORE_CHECKS`) against a backend.

    :param factory: makes a store on empty backing data, used as
        ``async with factory() as store`` (e.g. ``lambda: MemoryStore()``); called once or
        twice per check.
    :param reopen: opens a new store on the same data as the closed store it is given,
        as a restarted process would; ``None`` skips the across-restart parts.
    :param checks: the checks to run.
    :raises AssertionError: if any check fails; the message lists every failed check and
        its reason, and the individual failures are chained as an ``ExceptionGroup``.
    """
    failures: list[Exception] = []
    names: list[str] = []
    for check in checks:
        try:
            await check(factory, reopen=reopen)
        except Exception as exc:
            exc.add_note(f"in {check.__name__}")
            failures.append(exc)
            names.append(f"{check.__name__}: {type(exc).__name__}: {exc}")
    if failures:
        summary = "\n".join(names)
        raise AssertionError(
            f"{len(failures)} store conformance check(s) failed:\n{summary}"
        ) from ExceptionGroup("store conformance failures", failures)
