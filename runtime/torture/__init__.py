"""Crash torture for FileStore: ``python -m runtime.torture --trials N [--seed S]``.

Each trial runs a child process (:mod:`runtime.torture._child`) that plays random turns
(0-6 tool calls of random duration, streamed text, extra messages, titles, sometimes a
delete; several sessions at once) on a real FileStore, and kills it with SIGKILL:

* at a random instant (the parent sends the signal), or
* at the N-th call of a named file I/O step (journal append, fdatasync, snapshot
  write, rename, truncate, events file, index, …; see :mod:`runtime.stores.faults`),
  before the call, after it, or (for a write) half way through its bytes.

Then it reopens the store in a new :class:`~runtime.Runtime` (recovery and stale
repair run) and checks the invariants of :mod:`runtime.torture._check`: every session
loads; nothing acknowledged by a ``checkpoint`` event (its ``persisted_seq``) or a
finished turn is missing; nothing is duplicated; a killed turn has its prompt once
and exactly one interrupted marker; a new turn works. Trials run in chains that
share a store root, so later trials start from what earlier crashes left.

Prints a summary table (needs ``rich``, the ``cli`` extra) and exits 1 if any
invariant broke, 0 otherwise. Not imported by ``import runtime``.
"""

from __future__ import annotations

from ._check import CATEGORIES, Observed, Violation, check_store
from ._trial import KILL_STEPS, Summary, TrialResult, reopen_and_check, run_trial, run_trials

__all__ = [
    "CATEGORIES",
    "KILL_STEPS",
    "Observed",
    "Summary",
    "TrialResult",
    "Violation",
    "check_store",
    "reopen_and_check",
    "run_trial",
    "run_trials",
]
