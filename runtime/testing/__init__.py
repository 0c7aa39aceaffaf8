"""Public test helpers: the store and event-log conformance suites and scripted agents.

One concept per module: ``_store_checks`` (the persistence contract), ``_delta_checks``
(saves that say what changed), ``_lease_checks``
(leases, racing writers, cancelled saves, new sessions shared between processes),
``_ledger_checks`` (the tool ledger), ``_conformance`` (the whole store suite and its
runner), ``_event_log_checks`` (the event-log seam) and ``_agents`` (scripted agents).
Everything public is re-exported here.

**Store conformance.** Every rule of the persistence contract (DESIGN.md, "Persistence
contract"; the docstrings of :class:`~runtime.stores.abc.Store`) is one
``async def check_*(factory, *, reopen=None)`` function in :data:`STORE_CHECKS`. A backend
author runs them all with::

    from runtime.testing import run_store_conformance

    await run_store_conformance(lambda: MyStore(dsn))

or, under pytest, one test per check::

    @pytest.mark.parametrize("check", STORE_CHECKS, ids=lambda c: c.__name__)
    async def test_my_store(check, tmp_path):
        await check(lambda: MyStore(tmp_path / uuid.uuid4().hex))

``factory()`` must return an async context manager that yields an opened store on
empty backing data (a :class:`~runtime.stores.abc.Store` is one: ``async with store``).
``reopen(store)``, if given, opens a second store on the *same* backing data as
``store`` (which the checks close first), as a restarted process would; the checks then
also verify that what they wrote survives a restart. Leave it ``None`` for backends whose
data lives in the store object (:class:`~runtime.stores.memory.MemoryStore`). For a store
several processes share (capability flag ``Store.shared``), ``reopen`` must also work on a
store that is still open: the sharing checks open two at once, as two processes would.

Capability flags, read from the store: ``exclusive`` (one process owns the data, leases
live in the process), ``shared`` (several processes open the data at once; leases and
new sessions live in the backend) and ``supports_tool_ledger`` (the store keeps the tool
ledger; without it the ledger checks only require its methods to refuse). Every check
applies to every store; where the rule depends on a flag, the check says how.

**Event-log conformance.** :data:`EVENT_LOG_CHECKS` hold every
:class:`~runtime.brokers.abc.Broker` to the same behaviour; run them with
``await run_event_log_conformance(MyBroker)`` where ``MyBroker(retention=...,
max_events=...)`` makes an empty broker.

A failed check raises :class:`AssertionError` whose message names the call, what was
expected and what came back; the check's docstring names the rule and its source. The
checks use no test framework and nothing optional.

**Scripted agents.** :func:`scripted_agent` builds an agent that replays a list of steps
(tokens, tool calls with results, replies, errors, pauses, synchronisation points), for
tests of code that drives a :class:`~runtime.Runtime`.
"""

from __future__ import annotations

from ._agents import AddMessage as AddMessage
from ._agents import Notify as Notify
from ._agents import Raise as Raise
from ._agents import Reasoning as Reasoning
from ._agents import Reply as Reply
from ._agents import Run as Run
from ._agents import ScriptedAgent as ScriptedAgent
from ._agents import SetTitle as SetTitle
from ._agents import Sleep as Sleep
from ._agents import Step as Step
from ._agents import Token as Token
from ._agents import Tool as Tool
from ._agents import TurnRecord as TurnRecord
from ._agents import Usage as Usage
from ._agents import WaitFor as WaitFor
from ._agents import scripted_agent as scripted_agent
from ._conformance import STORE_CHECKS as STORE_CHECKS
from ._conformance import run_store_conformance as run_store_conformance
from ._delta_checks import check_delta_save_matches_full_save as check_delta_save_matches_full_save
from ._delta_checks import check_wrong_delta_refused as check_wrong_delta_refused
from ._event_log_checks import EVENT_LOG_CHECKS as EVENT_LOG_CHECKS
from ._event_log_checks import BrokerFactory as BrokerFactory
from ._event_log_checks import EventLogCheck as EventLogCheck
from ._event_log_checks import (
    check_append_refuses_gaps_and_bad_data as check_append_refuses_gaps_and_bad_data,
)
from ._event_log_checks import (
    check_attach_from_another_process as check_attach_from_another_process,
)
from ._event_log_checks import (
    check_cancel_request_reaches_owner as check_cancel_request_reaches_owner,
)
from ._event_log_checks import check_publish_and_read_in_order as check_publish_and_read_in_order
from ._event_log_checks import (
    check_readers_wait_and_all_get_every_event as check_readers_wait_and_all_get_every_event,
)
from ._event_log_checks import check_retention_and_drop as check_retention_and_drop
from ._event_log_checks import (
    check_subscribe_while_publishing as check_subscribe_while_publishing,
)
from ._event_log_checks import (
    check_waiters_wake_and_cancel_alone as check_waiters_wake_and_cancel_alone,
)
from ._event_log_checks import check_window_is_bounded as check_window_is_bounded
from ._event_log_checks import run_event_log_conformance as run_event_log_conformance
from ._lease_checks import check_cancelled_save_is_old_or_new as check_cancelled_save_is_old_or_new
from ._lease_checks import check_concurrent_claims_one_wins as check_concurrent_claims_one_wins
from ._lease_checks import check_concurrent_saves_never_torn as check_concurrent_saves_never_torn
from ._lease_checks import check_documents_compare_and_set as check_documents_compare_and_set
from ._lease_checks import (
    check_expired_lease_can_be_taken_over as check_expired_lease_can_be_taken_over,
)
from ._lease_checks import check_lease_claim_renew_release as check_lease_claim_renew_release
from ._lease_checks import check_new_session_sharing as check_new_session_sharing
from ._ledger_checks import (
    check_tool_ledger_cancelled_write_is_whole as check_tool_ledger_cancelled_write_is_whole,
)
from ._ledger_checks import (
    check_tool_ledger_deleted_with_session as check_tool_ledger_deleted_with_session,
)
from ._ledger_checks import (
    check_tool_ledger_first_record_wins as check_tool_ledger_first_record_wins,
)
from ._ledger_checks import check_tool_ledger_is_fenced as check_tool_ledger_is_fenced
from ._ledger_checks import (
    check_tool_ledger_refuses_bad_input as check_tool_ledger_refuses_bad_input,
)
from ._ledger_checks import (
    check_tool_ledger_result_needs_intent as check_tool_ledger_result_needs_intent,
)
from ._ledger_checks import check_tool_ledger_round_trip as check_tool_ledger_round_trip
from ._store_checks import Reopen as Reopen
from ._store_checks import StoreCheck as StoreCheck
from ._store_checks import StoreFactory as StoreFactory
from ._store_checks import check_closed_store as check_closed_store
from ._store_checks import check_delete_is_never_recovered as check_delete_is_never_recovered
from ._store_checks import check_discard_backup_keeps_none as check_discard_backup_keeps_none
from ._store_checks import (
    check_empty_overwrite_allowed_when_idle as check_empty_overwrite_allowed_when_idle,
)
from ._store_checks import (
    check_empty_overwrite_refused_while_pending as check_empty_overwrite_refused_while_pending,
)
from ._store_checks import check_events_round_trip as check_events_round_trip
from ._store_checks import check_final_save_persists_events as check_final_save_persists_events
from ._store_checks import check_growing_save_keeps_no_backup as check_growing_save_keeps_no_backup
from ._store_checks import check_invalid_session_ids as check_invalid_session_ids
from ._store_checks import check_list_active as check_list_active
from ._store_checks import check_list_bad_limit_and_cursor as check_list_bad_limit_and_cursor
from ._store_checks import check_list_hides_empty_untitled as check_list_hides_empty_untitled
from ._store_checks import check_list_pagination as check_list_pagination
from ._store_checks import check_list_sorted_newest_first as check_list_sorted_newest_first
from ._store_checks import check_load_metadata as check_load_metadata
from ._store_checks import check_loads_are_independent_copies as check_loads_are_independent_copies
from ._store_checks import check_metadata_only_save_refused as check_metadata_only_save_refused
from ._store_checks import check_missing_session as check_missing_session
from ._store_checks import check_new_session_in_memory_only as check_new_session_in_memory_only
from ._store_checks import check_recover_clean_store_is_noop as check_recover_clean_store_is_noop
from ._store_checks import check_save_load_round_trip as check_save_load_round_trip
from ._store_checks import check_shrinking_save_keeps_backup as check_shrinking_save_keeps_backup
from ._store_checks import check_skip_index_save_is_durable as check_skip_index_save_is_durable
from ._store_checks import check_token_runs_round_trip as check_token_runs_round_trip
from ._store_checks import check_touch_updated_at as check_touch_updated_at

__all__ = [
    "check_documents_compare_and_set",
    "EVENT_LOG_CHECKS",
    "BrokerFactory",
    "EventLogCheck",
    "run_event_log_conformance",
    "check_publish_and_read_in_order",
    "check_append_refuses_gaps_and_bad_data",
    "check_readers_wait_and_all_get_every_event",
    "check_waiters_wake_and_cancel_alone",
    "check_window_is_bounded",
    "check_retention_and_drop",
    "check_subscribe_while_publishing",
    "check_attach_from_another_process",
    "check_cancel_request_reaches_owner",
    "check_lease_claim_renew_release",
    "check_expired_lease_can_be_taken_over",
    "check_concurrent_claims_one_wins",
    "check_concurrent_saves_never_torn",
    "check_cancelled_save_is_old_or_new",
    "check_new_session_sharing",
    "check_delta_save_matches_full_save",
    "check_wrong_delta_refused",
    "check_tool_ledger_round_trip",
    "check_tool_ledger_first_record_wins",
    "check_tool_ledger_result_needs_intent",
    "check_tool_ledger_refuses_bad_input",
    "check_tool_ledger_is_fenced",
    "check_tool_ledger_deleted_with_session",
    "check_tool_ledger_cancelled_write_is_whole",
    "STORE_CHECKS",
    "AddMessage",
    "Notify",
    "Raise",
    "Reasoning",
    "Reopen",
    "Reply",
    "Run",
    "ScriptedAgent",
    "SetTitle",
    "Sleep",
    "Step",
    "Token",
    "Tool",
    "TurnRecord",
    "Usage",
    "WaitFor",
    "StoreCheck",
    "StoreFactory",
    "check_closed_store",
    "check_delete_is_never_recovered",
    "check_empty_overwrite_allowed_when_idle",
    "check_empty_overwrite_refused_while_pending",
    "check_events_round_trip",
    "check_final_save_persists_events",
    "check_token_runs_round_trip",
    "check_discard_backup_keeps_none",
    "check_growing_save_keeps_no_backup",
    "check_invalid_session_ids",
    "check_list_active",
    "check_list_bad_limit_and_cursor",
    "check_list_hides_empty_untitled",
    "check_list_pagination",
    "check_list_sorted_newest_first",
    "check_load_metadata",
    "check_loads_are_independent_copies",
    "check_metadata_only_save_refused",
    "check_missing_session",
    "check_new_session_in_memory_only",
    "check_recover_clean_store_is_noop",
    "check_save_load_round_trip",
    "check_shrinking_save_keeps_backup",
    "check_skip_index_save_is_durable",
    "check_touch_updated_at",
    "run_store_conformance",
    "scripted_agent",
]
