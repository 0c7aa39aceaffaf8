"""``PostgresStore``: sessions in PostgreSQL, shared by any number of processes.

Requires the ``postgres`` extra (asyncpg). Layout, in one schema (default ``runtime``),
created and migrated at :meth:`~runtime.Store.open` from :data:`MIGRATIONS`:

* ``sessions``: one row per stored session: the metadata as JSON (``meta``) plus the
  columns the listing and the checks read (``title``, ``updated_at``, ``message_count``,
  ``active_stream_id``, ``pending_user_message``, ``visible``) and the live stream's
  lease (``lease_owner``, ``lease_token``, ``lease_expires``, epoch seconds on the
  database server's clock); ``updated_at`` is the listing's key, written by the saves
  that update the list index, and ``touched_at`` the ``updated_at`` of a later
  checkpoint (a column no index holds, so the checkpoint's row update can be HOT);
* ``messages``: one row per message (``session_id``, ``idx``, ``body`` JSON text,
  ``touched_at``: the updated_at of a checkpoint that wrote it without writing the
  session's row, else NULL); a checkpoint rewrites the last stored row and inserts the
  new ones, O(new data). The rows are exactly ``0 .. count-1``: the session's exact
  message count, of which ``sessions.message_count`` is a lower bound while a running
  turn appends (see :data:`_CHECKPOINT_LOCKED`);
* ``backups``: the previous state of a session whose save shrank its messages (the
  ``.bak`` rule); :meth:`~runtime.Store.recover` restores it;
* ``tombstones``: deleted ids, never recovered;
* ``events``: the durable events of every stream, one record a row (``seq``: its
  first event's; a run of tokens is one row, see :func:`runtime._events.event_records`;
  ``ts``: its last event's), pruned after ``event_retention``
  seconds by :meth:`~runtime.Store.recover` and :meth:`PostgresStore.prune_events`;
* ``documents``: small named blobs with a version (the gateway route table), replaced
  by compare-and-set;
* ``drafts`` (UNLOGGED, so not durable): new sessions shared with other processes
  until their first save; they expire after ``draft_ttl`` seconds;
* ``tool_calls``: the tool ledger, one row per tool call (primary key ``session_id``,
  ``stream_id``, ``call_id``; ``seq`` keeps the order the calls started; ``arguments``
  and ``result`` as JSON text), deleted with its session (foreign key) and pruned with
  the events (by the time the call finished, or started).

A ledger write is one statement: it locks the session's row ``FOR SHARE`` (so no claim
can move the lease under it), applies the lease check, and inserts the intent
(``ON CONFLICT DO NOTHING``) or sets the result of a ``started`` call; the stored row
comes back when nothing was written.

Every save is one transaction that locks the session's row (``SELECT … FOR UPDATE``),
counts its message rows, applies the lease and content rules of the
:class:`~runtime.Store` contract to what it locked, and writes; or, for a session whose
row this store wrote last, a checkpoint statement guarded by that row version's
``xmin`` (see :data:`_CHECKPOINT_ROW`): a running turn's appends lock the row ``FOR
SHARE`` and write only messages and events, so a metadata-only load and the listing
(which read the row only) show the count and updated_at of the turn's last row write
(its claim or the last lease extension) until its final save. Driver errors become
:class:`~runtime.StoreError` at this edge; a lost connection is retried within
``retry_budget`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
import orjson

from .._events import Event, event_records, events_from_records, records_after
from .._exceptions import SessionBusy, SessionNotFound, StoreError, WriteConflict
from .._session import META_FIELDS, Session
from .abc import (
    CallKey,
    HeldLease,
    Lease,
    RecoveryReport,
    SaveRequest,
    Store,
    StoredInfo,
    ToolCallRecord,
    check_document_version,
    check_lease,
    map_exceptions,
    not_found,
    plan_save,
    tool_call_not_found,
    visible_in_list,
)

if TYPE_CHECKING:
    import asyncpg

__all__ = ["MIGRATIONS", "PostgresStore"]

T = TypeVar("T")
#: a save's event rows as the statements bind them: stream ids, seqs, timestamps, bodies
_Events = tuple[Sequence[str], Sequence[int], Sequence[float], Sequence[str]]
#: a save without events (shared: nothing appends to it)
_NO_EVENTS: _Events = ((), (), (), ())
_F = TypeVar("_F", bound=Callable[..., Any])

logger = logging.getLogger("runtime.stores.postgres")

_META_KEYS = tuple(k for k in META_FIELDS if k != "session_id")

#: The schema, as numbered steps applied in order at open (each once, recorded in
#: ``schema_migrations``). Append new steps; never edit an applied one.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE sessions (
            session_id text PRIMARY KEY,
            meta text NOT NULL,
            title text NOT NULL,
            updated_at double precision NOT NULL,
            message_count integer NOT NULL,
            active_stream_id text,
            pending_user_message text,
            visible boolean NOT NULL,
            lease_owner text,
            lease_token text,
            lease_expires double precision
        );
        CREATE INDEX sessions_listing ON sessions (updated_at DESC, session_id) WHERE visible;
        CREATE TABLE messages (
            session_id text NOT NULL REFERENCES sessions ON DELETE CASCADE,
            idx integer NOT NULL,
            body text NOT NULL,
            PRIMARY KEY (session_id, idx)
        );
        CREATE TABLE backups (
            session_id text PRIMARY KEY,
            meta text NOT NULL,
            message_count integer NOT NULL,
            messages text[] NOT NULL
        );
        CREATE TABLE tombstones (
            session_id text PRIMARY KEY,
            deleted_at double precision NOT NULL
        );
        CREATE TABLE events (
            session_id text NOT NULL,
            stream_id text NOT NULL,
            seq integer NOT NULL,
            ts double precision NOT NULL,
            body text NOT NULL,
            PRIMARY KEY (session_id, stream_id, seq)
        );
        CREATE INDEX events_ts ON events (ts);
        CREATE UNLOGGED TABLE drafts (
            session_id text PRIMARY KEY,
            body text NOT NULL,
            expires_at double precision NOT NULL
        );
        """,
    ),
    (
        2,
        """
        CREATE TABLE documents (
            name text PRIMARY KEY,
            body bytea NOT NULL,
            version integer NOT NULL
        );
        """,
    ),
    (
        3,
        """
        CREATE TABLE tool_calls (
            session_id text NOT NULL REFERENCES sessions ON DELETE CASCADE,
            stream_id text NOT NULL,
            call_id text NOT NULL,
            seq bigint GENERATED ALWAYS AS IDENTITY,
            name text NOT NULL,
            arguments text NOT NULL,
            state text NOT NULL CHECK (state IN ('started', 'completed', 'failed')),
            result text,
            error text,
            attempt integer NOT NULL,
            started_at double precision NOT NULL,
            finished_at double precision,
            PRIMARY KEY (session_id, stream_id, call_id)
        );
        CREATE INDEX tool_calls_order ON tool_calls (session_id, stream_id, seq);
        CREATE INDEX tool_calls_age ON tool_calls ((coalesce(finished_at, started_at)));
        """,
    ),
    (
        4,
        # Every message write is conditional on the session's row in the same statement
        # or transaction (so a row for a missing session is never inserted) and a delete
        # removes the messages itself: the foreign key only added a trigger and a lookup
        # of the session row to each inserted message, on every checkpoint.
        """
        ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_session_id_fkey;
        """,
    ),
    (
        5,
        # A checkpoint writes the session's updated_at into ``touched_at``, a column no
        # index holds, and leaves ``updated_at`` (the listing's key) to the saves that
        # update the list index: its row update changes no indexed column, so it can be
        # a HOT update (no new entries in the two indexes of ``sessions``) given room
        # on the row's page, which the fill factor keeps.
        """
        ALTER TABLE sessions ADD COLUMN touched_at double precision;
        ALTER TABLE sessions SET (fillfactor = 80);
        """,
    ),
    (
        6,
        # A checkpoint that only writes messages (and events) leaves the session's row
        # alone (see _CHECKPOINT_LOCKED): its updated_at goes into the messages it
        # writes. NULL on every row written otherwise, and on all existing rows, whose
        # sessions keep their row's updated_at and exact message_count: no data moves.
        """
        ALTER TABLE messages ADD COLUMN touched_at double precision;
        """,
    ),
    (
        7,
        # The sessions with an active stream, in list order: what a resume sweep reads
        # every ``lease_ttl / 2`` seconds on every node, a handful of rows however many
        # sessions the table holds. A checkpoint changes neither key nor predicate, so
        # its row update stays a HOT update.
        """
        CREATE INDEX sessions_active ON sessions (updated_at DESC, session_id)
            WHERE active_stream_id IS NOT NULL;
        """,
    ),
)

_NOW = "extract(epoch from clock_timestamp())"

# One statement, so one snapshot: the metadata row (idx -1, with the row's updated_at:
# its touched_at, which a checkpoint updates without rewriting ``meta``, else its
# updated_at) and the messages with their touched_at; the session's updated_at is the
# last message's touched_at when set, else the row's (read from the last row by the
# client: a probe of the primary key for it cost the server an InitPlan on every
# load). Each message is decoded on its own (no server-side aggregation of the whole
# history). No ORDER BY: the client sorts the records by idx (``PostgresStore._load``).
# With an ORDER BY the plan depended on the planner's estimate of the session's rows:
# where the session holds most of the table (or the table has no statistics yet) it
# chose a scan of the heap and a sort, which spills to disk past ``work_mem`` (6 MB at
# 10k messages of ~600 bytes): 54-73 ms against 27-33 ms for the bare SELECT of the
# same rows in the primary key's order, where Python's sort of rows that arrive in
# order, or in a few ordered runs, is one pass of comparisons.
_LOAD = """
SELECT -1 AS idx, meta AS body, coalesce(touched_at, updated_at)
  FROM sessions WHERE session_id = $1
UNION ALL
SELECT idx, body, touched_at FROM messages WHERE session_id = $1
"""


_IDX = itemgetter(0)


# The session's last message row (one probe of the primary key backwards), joined to
# a sessions row ``s``: ``l.idx + 1`` is the exact message count (NULL: none), and
# ``l.touched_at`` the updated_at of a checkpoint that wrote messages only (NULL: the
# row's).
_LAST_MESSAGE = """
LEFT JOIN LATERAL (SELECT idx, touched_at FROM messages m WHERE m.session_id = s.session_id
                    ORDER BY idx DESC LIMIT 1) l ON true
"""
# The count of a row a transaction has locked FOR UPDATE, in a statement of its own:
# the lock may have waited for a checkpoint's locked append, whose rows the locking
# statement's snapshot (taken before the wait) does not see; this statement's does.
_COUNT = """
SELECT coalesce((SELECT idx + 1 FROM messages WHERE session_id = $1 ORDER BY idx DESC LIMIT 1), 0)
"""

_LOCK = f"""
SELECT message_count, active_stream_id, pending_user_message,
       lease_owner, lease_token, lease_expires - {_NOW} AS expires_in,
       (SELECT b.message_count FROM backups b WHERE b.session_id = $1) AS backup_count
  FROM sessions WHERE session_id = $1 FOR UPDATE
"""

_INSERT_SESSION = """
INSERT INTO sessions (session_id, meta, title, updated_at, message_count, active_stream_id,
                      pending_user_message, visible)
VALUES ($1, '{}', '', 0, 0, NULL, NULL, false)
ON CONFLICT (session_id) DO NOTHING
RETURNING session_id
"""

# How many events an events row holds: a run record's texts, else one.
_HELD = "coalesce(json_array_length(({}.body::json) -> 'texts'), 1)"
# An events row already stored is kept, unless the new one starts at the same seq and
# holds more events (a run that grew between two saves that overlapped).
_EVENTS_CONFLICT = (
    "ON CONFLICT (session_id, stream_id, seq) DO UPDATE SET body = excluded.body, ts = excluded.ts"
    f" WHERE {_HELD.format('excluded')} > {_HELD.format('events')}"
)

# One statement writes the row, the lease, the messages from $13 on and the events,
# and returns the row version's xmin (see the checkpoint fast paths). It leaves the
# last message's touched_at NULL: the row's updated_at is the session's.
# $9 lease operation: 0 keep, 1 set ($10 owner, $11 token, $12 ttl seconds), 2 clear.
_WRITE = f"""
WITH u AS (
  UPDATE sessions SET meta = $2, title = $3, updated_at = $4, touched_at = NULL,
         message_count = $5, active_stream_id = $6, pending_user_message = $7, visible = $8,
         lease_owner = CASE $9::int WHEN 0 THEN lease_owner WHEN 1 THEN $10::text END,
         lease_token = CASE $9::int WHEN 0 THEN lease_token WHEN 1 THEN $11::text END,
         lease_expires = CASE $9::int WHEN 0 THEN lease_expires
                         WHEN 1 THEN {_NOW} + $12::float8 END
   WHERE session_id = $1
  RETURNING xmin
), m AS (
  INSERT INTO messages (session_id, idx, body)
  SELECT $1, $13::int + i - 1, b FROM unnest($14::text[]) WITH ORDINALITY AS t(b, i)
  ON CONFLICT (session_id, idx) DO UPDATE SET body = excluded.body, touched_at = NULL
), c AS (
  UPDATE messages SET touched_at = NULL
   WHERE session_id = $1 AND idx = $5::int - 1 AND $13::int >= $5::int
     AND touched_at IS NOT NULL
), e AS (
  INSERT INTO events (session_id, stream_id, seq, ts, body)
  SELECT $1, s, q, t, b
    FROM unnest($15::text[], $16::int[], $17::float8[], $18::text[]) AS v(s, q, t, b)
  {_EVENTS_CONFLICT}
)
SELECT xmin FROM u
"""

# The checkpoint fast paths: one autocommit statement each, for a session whose row
# this store wrote last. The store remembers that row version's ``xmin`` (the id of the
# transaction that wrote it) with the message count it knows; a statement applies only
# while the row is still that version (no other writer, claim, repair, shrink or
# restore since: each of them writes the row) and the stored lease token is the
# writer's ($5; NULL: not fenced). Otherwise it changes nothing and returns NULL / 0,
# and the transaction path decides (and raises).
#
# * The row path (:data:`_CHECKPOINT_ROW`) updates the row: the counter, touched_at,
#   the lease's expiry, the fields; it returns the new row version's xmin. It also
#   applies only while no backup row waits and the checkpoint does not shrink the list.
#   The row's updated_at goes to touched_at: a checkpoint does not update the list
#   index, so the update is HOT.
# * The locked path (:data:`_CHECKPOINT_LOCKED`) writes message rows (and events) only:
#   it locks the row ``FOR SHARE`` and inserts under that lock. A claim, repair or
#   transactional save locks the row ``FOR UPDATE``, so it waits for a running append
#   (then counts the rows in a later statement, see :data:`_COUNT`) or the append
#   waits for it and, under READ COMMITTED, re-checks its WHERE on the row version
#   that committed meanwhile: another xmin, so it writes nothing. No new row
#   version, no index entry, no HOT chain: a lock record in the WAL instead of an
#   update record. Its updated_at goes into the written messages' ``touched_at``.
#
# So ``sessions.message_count`` is a lower bound between row writes: the exact count is
# the messages' (they are dense: ``messages`` holds exactly the rows ``0 .. count-1``;
# every write that lowers the count deletes the rows above it in the same transaction),
# read by :data:`_LAST_MESSAGE`. And the session's updated_at is the last message's
# ``touched_at`` when set, else the row's: every row write leaves the last message's
# ``touched_at`` NULL (new rows have none; rewritten rows and a last row it does not
# write get NULL).
#
# Their texts depend on the checkpoint's shape, so each shape binds only what it writes
# (asyncpg encodes every parameter on every call; fourteen texts, so at most fourteen
# prepared statements per connection):
#
# * fields (row path only): the metadata JSON and the listing's columns. A delta that
#   names no field changed only the counters and updated_at, which have their own
#   columns; then ``visible`` can only turn true, when messages arrive (see
#   visible_in_list), and the locked path runs only when the row already holds
#   messages (so ``visible`` is already true).
# * the new messages (from idx $4 on) are a plain INSERT: the store knows the session
#   holds $4 messages and no other writer wrote since, so none of them can exist (two
#   tasks of this process racing an unfenced save collide on the primary key: that
#   error means "did not apply"). An upsert there cost a speculative insertion per
#   row (a conflict probe, a speculative index entry and one more WAL record).
# * rewrite: only the stored messages the checkpoint rewrites (the last one while it
#   is still open) go through ON CONFLICT, where the row exists and the conflict path
#   is an update.
# * events: a checkpoint without events carries no events CTE and no event arrays.
_CHECKPOINT_ROW = f"""
WITH u AS (
  UPDATE sessions SET touched_at = $2, message_count = $3, {{}}
         lease_expires = CASE WHEN $5::text IS NULL THEN lease_expires
                         ELSE {_NOW} + $6::float8 END
   WHERE session_id = $1 AND xmin = $7::xid AND $3::int >= $4::int
     AND ($5::text IS NULL OR lease_token = $5::text)
     AND NOT EXISTS (SELECT 1 FROM backups b WHERE b.session_id = $1)
  RETURNING xmin
), m AS (
  INSERT INTO messages (session_id, idx, body)
  SELECT $1, $4::int + i - 1, b FROM unnest($8::text[]) WITH ORDINALITY AS t(b, i)
   WHERE EXISTS (SELECT 1 FROM u)
)"""
# the row path without a message to write: the last one's touched_at goes back to NULL
_CHECKPOINT_CLEAR = """, c AS (
  UPDATE messages SET touched_at = NULL
   WHERE session_id = $1 AND idx = $4::int - 1 AND touched_at IS NOT NULL
     AND cardinality($8::text[]) = 0 AND EXISTS (SELECT 1 FROM u)
)"""
_CHECKPOINT_LOCKED = """
WITH u AS (
  SELECT 1 FROM sessions
   WHERE session_id = $1 AND xmin = $5::xid AND lease_token = $4::text
     FOR SHARE
), m AS (
  INSERT INTO messages (session_id, idx, body, touched_at)
  SELECT $1, $3::int + i - 1, b, $2 FROM unnest($6::text[]) WITH ORDINALITY AS t(b, i)
   WHERE EXISTS (SELECT 1 FROM u)
)"""
# The locked path's commonest shape (new messages only: no rewrite, no events) as one
# plain INSERT, no CTE: the row lock is the join's ``FOR SHARE OF sessions``, and the
# status (``INSERT 0 n``, n > 0: applied) replaces the count a CTE returned. Run with
# ``execute``: no result row to describe and decode. Same parameters as the locked
# path's (see _checkpoint_sql).
_CHECKPOINT_APPEND = """
INSERT INTO messages (session_id, idx, body, touched_at)
SELECT $1, $3::int + i - 1, b, $2
  FROM sessions, unnest($6::text[]) WITH ORDINALITY AS t(b, i)
 WHERE session_id = $1 AND xmin = $5::xid AND lease_token = $4::text
   FOR SHARE OF sessions
"""
# The same for one new message (a running turn's commonest checkpoint): its body as one
# text parameter, not a one-element array for ``unnest``. asyncpg encodes an array
# parameter in ~13k client instructions (the element's type checks, the array
# header), a text one in a few hundred; the server skips the function scan. Same
# parameters otherwise, $6 the body.
_CHECKPOINT_APPEND_ONE = """
INSERT INTO messages (session_id, idx, body, touched_at)
SELECT $1, $3::int, $6::text, $2
  FROM sessions
 WHERE session_id = $1 AND xmin = $5::xid AND lease_token = $4::text
   FOR SHARE OF sessions
"""
_CHECKPOINT_FIELDS = (
    "meta = ${}, title = ${}, active_stream_id = ${}, pending_user_message = ${}, visible = ${},"
)
_CHECKPOINT_NO_FIELDS = "visible = visible OR $3::int > 0,"
_CHECKPOINT_REWRITE = """, r AS (
  INSERT INTO messages (session_id, idx, body, touched_at)
  SELECT $1, ${}::int + i - 1, b, {} FROM unnest(${}::text[]) WITH ORDINALITY AS t(b, i)
   WHERE EXISTS (SELECT 1 FROM u)
  ON CONFLICT (session_id, idx) DO UPDATE SET body = excluded.body,
     touched_at = excluded.touched_at
)"""
_CHECKPOINT_EVENTS = """, e AS (
  INSERT INTO events (session_id, stream_id, seq, ts, body)
  SELECT $1, s, q, t, b
    FROM unnest(${}::text[], ${}::int[], ${}::float8[], ${}::text[]) AS v(s, q, t, b)
   WHERE EXISTS (SELECT 1 FROM u)
  {}
)"""


def _checkpoint_sql(fields: bool, rewrite: bool, events: bool, locked: bool = False) -> str:
    """The checkpoint statement for a shape.

    The row path's parameters: $1 session id, $2 updated_at, $3 message count, $4 the
    stored count it expects, $5 lease token, $6 lease ttl (seconds), $7 the row's
    expected xmin, $8 the new messages' bodies; then, each group present only in its
    shape: the five field columns, the first rewritten idx and its bodies, the four
    event arrays. It returns the new xmin (NULL: not applied).

    The locked path's (``locked``; never with ``fields``): $1 session id, $2
    updated_at, $3 the stored count, $4 lease token, $5 the row's expected xmin, $6
    the new messages' bodies, then the rewrite and event groups. It returns 1 (0: not
    applied).
    """
    if locked:
        assert not fields
        n, sql, ts = 7, _CHECKPOINT_LOCKED, "$2"
    else:
        n, ts = 9, "NULL::float8"
        sql = _CHECKPOINT_ROW.format(
            _CHECKPOINT_FIELDS.format(*range(n, n + 5)) if fields else _CHECKPOINT_NO_FIELDS
        )
        if fields:
            n += 5
        if not rewrite:
            sql += _CHECKPOINT_CLEAR
    if rewrite:
        sql += _CHECKPOINT_REWRITE.format(n, ts, n + 1)
        n += 2
    if events:
        sql += _CHECKPOINT_EVENTS.format(*range(n, n + 4), _EVENTS_CONFLICT)
    return sql + ("\nSELECT count(*) FROM u\n" if locked else "\nSELECT xmin FROM u\n")


#: (fields, rewrite, events) -> the statement
_CHECKPOINTS = {
    (f, r, e): _checkpoint_sql(f, r, e)
    for f in (False, True)
    for r in (False, True)
    for e in (False, True)
}
#: (rewrite, events) -> the locked path's statement
_CHECKPOINTS_LOCKED = {
    (r, e): _checkpoint_sql(False, r, e, locked=True) for r in (False, True) for e in (False, True)
}

_INSERT_MESSAGES = """
INSERT INTO messages (session_id, idx, body)
SELECT $1, $2 + i - 1, b FROM unnest($3::text[]) WITH ORDINALITY AS t(b, i)
"""

_UPDATE_SESSION = """
UPDATE sessions SET meta = $2, title = $3, updated_at = $4, touched_at = NULL,
       message_count = $5, active_stream_id = $6, pending_user_message = $7, visible = $8
 WHERE session_id = $1
"""

_BACKUP = """
INSERT INTO backups (session_id, meta, message_count, messages)
SELECT s.session_id, s.meta, cardinality(a.bodies), a.bodies
  FROM sessions s,
       LATERAL (SELECT coalesce(array_agg(m.body ORDER BY m.idx), '{}') AS bodies
                  FROM messages m WHERE m.session_id = s.session_id) a
 WHERE s.session_id = $1
ON CONFLICT (session_id) DO UPDATE
   SET meta = excluded.meta, message_count = excluded.message_count,
       messages = excluded.messages
"""

_TOOL_COLUMNS = "call_id, name, arguments, state, result, error, attempt, started_at, finished_at"

# The ledger writes: the session row locked FOR SHARE (a claim or repair, which locks
# it FOR UPDATE, waits), the lease check ($n: the writer's token; NULL: not fenced),
# the write, and the row as the statement's snapshot saw it. Returns one row:
# (session stored, lease owner, lease token, written record or NULL, stored or NULL).
_LEDGER_SESSION = """
WITH s AS (
  SELECT lease_owner, lease_token FROM sessions WHERE session_id = $1 FOR SHARE
)"""
_LEDGER_RESULT = f"""
SELECT EXISTS (SELECT 1 FROM s), (SELECT lease_owner FROM s), (SELECT lease_token FROM s),
       (SELECT row({_TOOL_COLUMNS}) FROM w),
       (SELECT row({_TOOL_COLUMNS}) FROM tool_calls
         WHERE session_id = $1 AND stream_id = $2 AND call_id = $3)
"""
_START_TOOL_CALL = f"""{_LEDGER_SESSION}, w AS (
  INSERT INTO tool_calls (session_id, stream_id, call_id, name, arguments, state, attempt,
                          started_at)
  SELECT $1, $2, $3, $4, $5, 'started', $6, $7 FROM s
   WHERE $8::text IS NULL OR s.lease_token = $8::text
  ON CONFLICT (session_id, stream_id, call_id) DO NOTHING
  RETURNING {_TOOL_COLUMNS}
){_LEDGER_RESULT}"""
_FINISH_TOOL_CALL = f"""{_LEDGER_SESSION}, w AS (
  UPDATE tool_calls SET state = $4, result = $5, error = $6, finished_at = $7
   WHERE session_id = $1 AND stream_id = $2 AND call_id = $3 AND state = 'started'
     AND EXISTS (SELECT 1 FROM s WHERE $8::text IS NULL OR s.lease_token = $8::text)
  RETURNING {_TOOL_COLUMNS}
){_LEDGER_RESULT}"""


def _list_sql(rows: str, after: bool) -> str:
    """A page of the listing's order (``updated_at DESC, session_id``) over ``rows`` (the
    predicate of the partial index to scan): the first page (``$1``: limit), or the page
    after the keyset ``($1, $2)`` (``$3``: limit). ``updated_at <= $1`` is the index
    condition that starts the scan at the cursor; the tie rule only filters the rows of
    that one ``updated_at``. Written as ``updated_at < $1 OR (updated_at = $1 AND ...)``
    alone, the scan started at the top and filtered every row before the cursor: each
    page cost O(sessions), 41 ms at 100k and 20 s for a sweep of every page of 200."""
    where = f"WHERE {rows}"
    if after:
        where += " AND updated_at <= $1 AND (updated_at < $1 OR session_id > $2)"
    limit = "$3" if after else "$1"
    return (
        f"SELECT session_id, meta, message_count, updated_at FROM sessions {where}"
        f" ORDER BY updated_at DESC, session_id LIMIT {limit}"
    )


#: (first page, page after a cursor) of every visible session, and of the sessions with
#: an active stream (a partial index each).
_LIST = (_list_sql("visible", False), _list_sql("visible", True))
_LIST_ACTIVE = (
    _list_sql("active_stream_id IS NOT NULL", False),
    _list_sql("active_stream_id IS NOT NULL", True),
)


def _transient_errors() -> tuple[type[BaseException], ...]:
    import asyncpg

    return (
        OSError,
        asyncpg.ConnectionDoesNotExistError,
        asyncpg.CannotConnectNowError,
        asyncpg.ConnectionFailureError,
        asyncpg.TooManyConnectionsError,
        asyncpg.InterfaceError,
        # raised by a connection the server closed under it (seen with idle pooled
        # connections after pg_terminate_backend)
        asyncpg.InternalClientError,
    )


async def _keep_session(con: asyncpg.Connection) -> None:
    """The pool's reset of a released connection: nothing to send.

    asyncpg's default reset runs ``SELECT pg_advisory_unlock_all(); CLOSE ALL;
    UNLISTEN *; RESET ALL`` on every release, one more round trip per operation (a
    checkpoint's second). This store never leaves session state on a connection: it
    never runs ``SET`` (the ``search_path`` is a startup setting), ``LISTEN``,
    ``PREPARE`` or ``DECLARE`` in SQL (asyncpg's own statement cache is
    per-connection by design), and its only advisory locks are transaction-scoped
    (``pg_advisory_xact_lock``). asyncpg still rolls back a transaction left open
    and waits out a cancelled query before this runs, and closes a connection whose
    reset fails.
    """


_CONNECTION_CLASS: Any = None

#: what :meth:`PostgresStore._on_kept_connection` returns: the connection method's name
_VALUE, _ROWS, _STATUS = "fetchval", "fetch", "execute"


def _connection_class() -> Any:
    """The store's connection class: an ``asyncpg.Connection`` that records when its
    statement in flight was sent (``since``, ``time.monotonic()``; 0.0: none), for the
    store's watchdog (:meth:`PostgresStore._watch`).

    That is the whole per-statement cost of the bound on a statement: a clock read and
    two attribute writes, no timer. asyncpg's own ``command_timeout`` arms an asyncio
    timer per statement (a ``TimerHandle``, a heap push, and a cancelled handle left in
    the loop's heap until its next clean-up): ~36k of a checkpoint's ~237k client
    instructions. Only the methods the store calls are wrapped (``con.transaction()``
    runs ``BEGIN``/``COMMIT``/``ROLLBACK`` through :meth:`execute`); the previous value
    is restored, so a nested call cannot clear an outer statement's mark.
    """
    global _CONNECTION_CLASS
    if _CONNECTION_CLASS is not None:
        return _CONNECTION_CLASS
    import asyncpg

    monotonic = time.monotonic

    def marked(method: _F) -> _F:
        """``method`` with the connection's ``since`` set while it runs."""

        async def call(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
            before, self.since = self.since, monotonic()
            try:
                return await method(self, query, *args, **kwargs)
            finally:
                self.since = before

        call.__name__ = call.__qualname__ = method.__name__
        call.__doc__ = method.__doc__
        return cast(_F, call)

    class WatchedConnection(asyncpg.Connection):
        __slots__ = ("since",)

        #: asyncpg's own, for a caller that sets ``since`` itself (one coroutine less)
        execute_unmarked = asyncpg.Connection.execute
        fetch_unmarked = asyncpg.Connection.fetch
        fetchval_unmarked = asyncpg.Connection.fetchval

        execute = marked(asyncpg.Connection.execute)
        fetch = marked(asyncpg.Connection.fetch)
        fetchrow = marked(asyncpg.Connection.fetchrow)
        fetchval = marked(asyncpg.Connection.fetchval)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.since = 0.0

        def connection(self) -> Any:
            """This connection, also when called through the pool's proxy (whose
            every attribute access is a Python ``__getattr__``)."""
            return self

    _CONNECTION_CLASS = WatchedConnection
    return WatchedConnection


def _meta_json(session: Session) -> str:
    return orjson.dumps({k: getattr(session, k) for k in _META_KEYS}).decode()


def _session_from(session_id: str, meta: str, count: int, messages: str | None) -> Session:
    d: dict[str, Any] = orjson.loads(meta)
    d["session_id"] = session_id
    if messages is None:
        d["message_count"] = count
        return Session.from_dict(d, metadata_only=True)
    d["messages"] = orjson.loads(messages)
    return Session.from_dict(d)


def _tool_call(session_id: str, stream_id: str, row: Any) -> ToolCallRecord:
    """A record from its session and stream and a row of :data:`_TOOL_COLUMNS`."""
    call_id, name, arguments, state, result, error, attempt, started_at, finished_at = row
    return ToolCallRecord(
        session_id,
        stream_id,
        call_id,
        name,
        orjson.loads(arguments),
        state,
        None if result is None else orjson.loads(result),
        error,
        attempt,
        started_at,
        finished_at,
    )


@dataclass(slots=True)
class _Written:
    """What this store knows of a session's row version it wrote last: the checkpoint
    fast paths apply only while the row is still that version (see
    :data:`_CHECKPOINT_ROW`)."""

    #: the messages stored (rows ``0 .. count-1``)
    count: int
    #: the row version's ``xmin``
    xmin: int
    #: the lease token the row holds, when this store set or renewed it (else None)
    token: str | None = None
    #: ``time.monotonic()`` just before the statement that set or extended that lease
    #: was sent: its expiry is at least ``ttl`` after this, on any clock
    renewed: float = 0.0


#: A checkpoint extends its lease (the row path) once this fraction of the lease's ttl
#: has passed since the last extension; in between, checkpoints take the locked path.
#: The runner's checkpoint coroutine renews an idle turn's lease after a third of the
#: ttl too, so a running turn's lease keeps at least a third of its ttl.
RENEW_AFTER = 1 / 3


class PostgresStore(Store):
    """Sessions in PostgreSQL through an asyncpg connection pool.

    Several processes (``uvicorn --workers N``, several machines) may share one
    database: writes are transactions, the live stream of a session is owned by a
    lease stored in its row, and new sessions are shared through the ``drafts`` table.

    :param dsn: a libpq connection string, ``postgresql://user@host:port/db``.
    :param schema: the schema holding the tables (created if missing); lets several
        independent stores share one database.
    :param min_size: connections the pool keeps open.
    :param max_size: connections the pool may open; with 2 or more, one of them is kept
        out of the pool for checkpoints (no acquire and release per checkpoint).
    :param event_retention: seconds a stream's durable events are kept (``None``: for
        ever); older ones are pruned by :meth:`~runtime.Store.recover` and
        :meth:`prune_events`.
    :param retry_budget: seconds spent retrying an operation whose connection was lost
        (server restart, network blip), with backoff; then :class:`~runtime.StoreError`.
    :param draft_ttl: seconds a new session stays visible to other processes before its
        first save.
    :param command_timeout: seconds one statement may take before it fails with
        :class:`~runtime.StoreError` (saves run shielded from cancellation; this bounds
        them); ``None``: no bound. The server enforces it (``statement_timeout``, lock
        waits included): the statement is cancelled there and the call raises
        ``StoreError`` from asyncpg's ``QueryCanceledError``, not retried. A statement
        the server cannot end (a connection that stopped answering: a dead network
        path, a stopped server) is the store's watchdog's: one timer per store checks
        every ``command_timeout / 2`` seconds and closes the connection of a statement
        still unanswered after ``2 * command_timeout``; that is a lost connection,
        retried within ``retry_budget``, then ``StoreError``. No timer per statement.
    :raises ValueError: if ``command_timeout`` is not a positive number or ``None``.
    :raises StoreError: from :meth:`open` if the server cannot be reached within the
        retry budget or the schema cannot be migrated.
    """

    exclusive = False
    shared = True
    supports_tool_ledger = True

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "runtime",
        min_size: int = 1,
        max_size: int = 10,
        event_retention: float | None = 7 * 86400.0,
        retry_budget: float = 10.0,
        draft_ttl: float = 86400.0,
        command_timeout: float | None = 60.0,
    ) -> None:
        super().__init__()
        if not schema.isidentifier():
            raise ValueError(f"invalid schema {schema!r}: must be an SQL identifier")
        if command_timeout is not None and not (
            isinstance(command_timeout, int | float)
            and not isinstance(command_timeout, bool)
            and 0 < command_timeout < float("inf")
        ):
            raise ValueError(
                f"invalid command_timeout {command_timeout!r}: must be a positive number of"
                " seconds, or None for no bound"
            )
        self.dsn = dsn
        self.schema = schema
        self.min_size = min_size
        self.max_size = max_size
        self.event_retention = event_retention
        self.retry_budget = retry_budget
        self.draft_ttl = draft_ttl
        self.command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None
        self._errors: dict[type[BaseException], type[Exception]] = {}
        #: per session, the row version this store wrote last (the fast paths' guard)
        self._written: dict[str, _Written] = {}
        self._unique_violation: type[Exception] = Exception
        #: the connection kept out of the pool for checkpoints, and whether one runs on it
        self._kept: Any = None
        #: the connection behind the pool's proxy ``_kept`` (no ``__getattr__`` per use)
        self._kept_con: Any = None
        self._kept_busy = False
        #: ``anyio.CancelScope`` resolves the event loop's backend (sniffio) on every
        #: call; asyncpg runs on asyncio only, so the store looks its class up once
        self._scope: Callable[..., anyio.CancelScope] = anyio.CancelScope
        #: the pool's connections (the watchdog's rounds), its next round, and how many
        #: connections it has closed
        self._watched: weakref.WeakSet[Any] = weakref.WeakSet()
        self._watch_handle: asyncio.TimerHandle | None = None
        self._watchdog_closed = 0

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self.schema!r})"

    # -- connection, errors, retries ----------------------------------------------------

    async def _open(self) -> None:
        import asyncpg

        self._unique_violation = asyncpg.UniqueViolationError
        self._errors = {
            asyncpg.PostgresError: StoreError,
            asyncpg.InterfaceError: StoreError,
            asyncpg.InternalClientError: StoreError,
            OSError: StoreError,
        }

        settings = {"search_path": self.schema, "application_name": f"runtime:{self.schema}"}
        if self.command_timeout is not None:
            # the bound on a statement, enforced by the server (milliseconds; 0 is none)
            settings["statement_timeout"] = str(max(1, round(self.command_timeout * 1000)))

        async def watched(con: asyncpg.Connection) -> None:
            self._watched.add(con)

        async def connect() -> asyncpg.Pool:
            return await asyncpg.create_pool(
                self.dsn,
                min_size=self.min_size,
                max_size=self.max_size,
                # no client timer per statement: the server's statement_timeout and the
                # watchdog bound it (see the class docstring and _watch)
                command_timeout=None,
                connection_class=_connection_class(),
                init=watched,
                reset=_keep_session,
                server_settings=settings,
            )

        self._scope = type(anyio.CancelScope())
        self._pool = await self._retry(connect)
        if self.command_timeout is not None:
            self._watch_handle = asyncio.get_running_loop().call_later(
                self.command_timeout / 2, self._watch
            )
        try:
            await self._retry(self._migrate)
        except BaseException:
            await self._close()
            raise

    def _watch(self) -> None:
        """The watchdog's round: close the connection of every statement still
        unanswered ``2 * command_timeout`` seconds after it was sent, then schedule the
        next round in ``command_timeout / 2`` seconds.

        The server cancels a statement at ``command_timeout`` (``statement_timeout``)
        and answers with an error; a statement past twice that got no answer because
        the connection stopped answering (a dead network path, a stopped server
        process), where only the client can end it. Closing the connection fails the
        statement with asyncpg's ``ConnectionDoesNotExistError``: a lost connection,
        retried within ``retry_budget`` on another one (a save's statements are
        conditional, so a retry of one that landed writes nothing twice), then
        :class:`~runtime.StoreError`; the pool replaces the connection.
        """
        assert self.command_timeout is not None
        limit = 2 * self.command_timeout
        now = time.monotonic()
        for con in list(self._watched):
            since = con.since
            if since and now - since > limit and not con.is_closed():
                logger.warning(
                    "%r: a statement had no answer after %.1f seconds (command_timeout %s);"
                    " closing its connection",
                    self,
                    now - since,
                    self.command_timeout,
                )
                self._watchdog_closed += 1
                con.terminate()
        if self._pool is not None:
            self._watch_handle = asyncio.get_running_loop().call_later(
                self.command_timeout / 2, self._watch
            )

    async def _close(self) -> None:
        if self._watch_handle is not None:
            self._watch_handle.cancel()
            self._watch_handle = None
        pool, self._pool = self._pool, None
        kept = None
        if not self._kept_busy:  # else the running checkpoint gives it back
            kept, self._kept = self._kept, None
        if pool is not None:
            closed = False
            with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                if kept is not None:
                    await pool.release(kept)
                await pool.close()
                closed = True
            if not closed:  # close() timed out: drop the connections
                pool.terminate()

    async def _migrate(self) -> None:
        async with self._conn() as con, con.transaction():
            # One migrator at a time across processes (the lock ends with the transaction).
            await con.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.schema)
            await con.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version integer PRIMARY KEY, applied_at double precision NOT NULL)"
            )
            done = {r[0] for r in await con.fetch("SELECT version FROM schema_migrations")}
            for version, sql in MIGRATIONS:
                if version not in done:
                    await con.execute(sql)
                    await con.execute(f"INSERT INTO schema_migrations VALUES ($1, {_NOW})", version)

    def _conn(self) -> Any:
        if self._pool is None:
            raise StoreError(f"{self!r} has no connection pool (not open)")
        return self._pool.acquire()

    async def _retry(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run ``op``, retrying a lost connection with backoff for ``retry_budget``
        seconds; driver errors leave as :class:`StoreError` (``from`` the original)."""
        closed = self._watchdog_closed
        try:
            # the common case first: no context manager, no clock read
            return await op()
        except Exception as first:
            return await self._retry_after(first, op, closed)

    async def _retry_after(
        self, first: Exception, op: Callable[[], Awaitable[T]], closed: int
    ) -> T:
        """:meth:`_retry` once ``op``'s first run raised ``first`` (``closed``: the
        watchdog's count of closed connections before that run)."""
        failed: Exception | None = first
        transient = _transient_errors()
        # the budget counts from the first failure
        deadline = time.monotonic() + self.retry_budget
        delay = 0.05
        while True:
            try:
                with map_exceptions(self._errors):
                    try:
                        if failed is not None:
                            again, failed = failed, None
                            raise again
                        return await op()
                    except transient:
                        if time.monotonic() + delay > deadline:
                            raise
            except StoreError as exc:
                exc.add_note(f"PostgresStore schema {self.schema!r}")
                if self._watchdog_closed != closed:
                    exc.add_note(
                        "the store's watchdog closed a connection whose statement had no"
                        f" answer after 2 * command_timeout ({self.command_timeout} s)"
                    )
                raise
            await anyio.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 1.0)

    # -- reading ---------------------------------------------------------------------

    async def _stored_info(self, session_id: str) -> StoredInfo | None:
        async def op() -> StoredInfo | None:
            async with self._conn() as con:
                row = await con.fetchrow(
                    "SELECT message_count, active_stream_id, pending_user_message"
                    " FROM sessions WHERE session_id = $1",
                    session_id,
                )
            return None if row is None else StoredInfo(row[0], row[1], row[2])

        return await self._retry(op)

    async def _load(self, session_id: str) -> Session:
        async def op() -> Any:
            return await self._on_kept_connection(_LOAD, (session_id,), _ROWS)

        rows = await self._retry(op)
        # by idx (an int key: the list sort's integer path): the metadata row (idx -1)
        # first, then the messages in order
        rows.sort(key=_IDX)
        if not rows or rows[0][0] != -1:
            return await self._draft(session_id)
        d: dict[str, Any] = orjson.loads(rows[0][1])
        d["session_id"] = session_id
        d["messages"] = [orjson.loads(r[1]) for r in islice(rows, 1, None)]
        last = rows[-1][2]  # the last message's touched_at (the metadata row's: its own)
        d["updated_at"] = rows[0][2] if last is None else last
        return Session.from_dict(d)

    async def _load_metadata(self, session_id: str) -> Session:
        async def op() -> Any:
            async with self._conn() as con:
                return await con.fetchrow(
                    "SELECT meta, message_count, coalesce(touched_at, updated_at)"
                    " FROM sessions WHERE session_id = $1",
                    session_id,
                )

        row = await self._retry(op)
        if row is None:
            draft = await self._draft(session_id)
            return Session.from_dict(draft.meta_dict(), metadata_only=True)
        session = _session_from(session_id, row[0], row[1], None)
        session.updated_at = row[2]  # the column: a checkpoint may leave meta's copy behind
        return session

    async def _list_page(
        self, limit: int, after: tuple[float, str] | None, queries: tuple[str, str] = _LIST
    ) -> list[Session]:
        async def op() -> list[Any]:
            async with self._conn() as con:
                if after is None:
                    return list(await con.fetch(queries[0], limit))
                return list(await con.fetch(queries[1], after[0], after[1], limit))

        rows = await self._retry(op)
        out = []
        for sid, meta, count, updated_at in rows:
            session = _session_from(sid, meta, count, None)
            session.updated_at = updated_at  # the key the page was sorted by
            out.append(session)
        return out

    async def _has_more(self, last: Session) -> bool:
        return bool(await self._list_page(1, (last.updated_at, last.session_id)))

    async def _list_active_page(self, limit: int, after: tuple[float, str] | None) -> list[Session]:
        return await self._list_page(limit, after, _LIST_ACTIVE)

    async def _load_events(self, session_id: str, stream_id: str, after_seq: int) -> list[Event]:
        async def op() -> list[Any]:
            async with self._conn() as con:
                return list(
                    await con.fetch(
                        "SELECT body FROM events WHERE session_id = $1 AND stream_id = $2"
                        f" AND (seq > $3 OR seq + {_HELD.format('events')} > $3 + 1)"
                        " ORDER BY seq",
                        session_id,
                        stream_id,
                        after_seq,
                    )
                )

        rows = await self._retry(op)
        return events_from_records(records_after((orjson.loads(r[0]) for r in rows), after_seq))

    async def _lease_of(self, session_id: str) -> HeldLease | None:
        async def op() -> Any:
            async with self._conn() as con:
                return await con.fetchrow(
                    f"SELECT lease_owner, lease_token, lease_expires - {_NOW}"
                    " FROM sessions WHERE session_id = $1",
                    session_id,
                )

        row = await self._retry(op)
        if row is None or row[1] is None:
            return None
        return HeldLease(row[0], row[1], row[2])

    # -- writing ---------------------------------------------------------------------

    async def _write(
        self, session: Session, *, skip_index: bool, backup: bool, events: Sequence[Event]
    ) -> None:  # pragma: no cover - _save is overridden; kept for the ABC
        raise NotImplementedError("PostgresStore writes in _save")

    async def _save(self, session: Session, request: SaveRequest) -> None:
        events: _Events = _NO_EVENTS
        if request.events:
            records = event_records(request.events)  # a run of tokens is one row
            events = (
                [r["stream_id"] for r in records],
                [r["seq"] for r in records],
                [r["ts"][-1] if "texts" in r else r["ts"] for r in records],
                [orjson.dumps(r).decode() for r in records],
            )

        sid = session.session_id
        if request.skip_index and request.lease_mode == "renew" and sid in self._written:
            # The checkpoint fast path: one conditional statement, run without a cancel
            # scope. A caller cancelled while it runs goes on only once the statement has
            # ended on the server (see _on_kept_connection): the checkpoint landed or did
            # not before the cancellation proceeds, never later.
            closed = self._watchdog_closed
            try:
                try:
                    applied = await self._checkpoint_cas(session, request, events)
                except Exception as first:
                    applied = await self._retry_after(
                        first, partial(self._checkpoint_cas, session, request, events), closed
                    )
            except BaseException:
                # it may have landed: the transaction path finds out next time
                self._written.pop(sid, None)
                raise
            if applied:
                return

        # Shielded: a save whose caller is cancelled still completes (or fails) before
        # the cancellation goes on, so it can never land later, after the caller has
        # looked at the stored state (asyncpg's cancel request races the server).
        # ``command_timeout`` bounds it.
        with self._scope(shield=True):

            async def op() -> _Written | None:
                async with self._conn() as con, con.transaction():
                    return await self._save_in(con, session, request, events)

            self._written.pop(sid, None)
            written = await self._retry(op)
            if written is not None:
                self._written[sid] = written
        if len(self._written) > 10_000:  # a guess per session: keep it bounded
            self._written.clear()

    async def _checkpoint_cas(
        self, session: Session, request: SaveRequest, events: _Events
    ) -> bool:
        """The checkpoint fast paths (:func:`_checkpoint_sql`) for a session whose row
        this store wrote last; False if they did not apply (the transaction path then
        decides)."""
        sid = session.session_id
        written = self._written[sid]
        delta = request.delta
        guess = written.count
        if delta is not None and delta.base != guess:
            return False  # a wrong delta, or another writer: the transaction path decides
        if request.touch_updated_at:
            session.updated_at = time.time()
        messages = session.messages
        count = len(messages)
        if count < guess:
            return False
        # the delta says which stored message changed; else the last may have
        start = max(0, guess - 1) if delta is None else delta.keep
        lease = request.lease
        token = None if lease is None else lease.token
        fields = delta is None or bool(delta.fields)
        rewrite = start < guess
        now = time.monotonic()
        # The locked path: a running turn's checkpoint (a lease: the row's count and
        # updated_at may lag behind its checkpoints until the lease's next extension or
        # the final save, see the module docstring), no field to write, a message to
        # write (it carries the updated_at), messages stored already (so the row is
        # listed, see visible_in_list), and the lease extended by this store less than
        # a third of its ttl ago (else the row path extends it).
        locked = (
            lease is not None
            and not fields
            and count > start
            and guess > 0
            and written.token == token
            and now - written.renewed < lease.ttl * RENEW_AFTER
        )
        args: list[Any]
        how = _VALUE
        if locked and count == guess + 1 and not rewrite and not events[0]:
            # the commonest checkpoint: one new message, as one text parameter
            body = orjson.dumps(messages[guess]).decode()
            args = [sid, session.updated_at, guess, token, written.xmin, body]
            sql, how = _CHECKPOINT_APPEND_ONE, _STATUS
        else:
            bodies = [orjson.dumps(m).decode() for m in messages[start:]]
            new = bodies[guess - start :] if rewrite else bodies
            if locked:
                args = [sid, session.updated_at, guess, token, written.xmin, new]
                if rewrite or events[0]:
                    sql = _CHECKPOINTS_LOCKED[rewrite, bool(events[0])]
                else:
                    sql, how = _CHECKPOINT_APPEND, _STATUS
            else:
                args = [
                    sid,
                    session.updated_at,
                    count,
                    guess,
                    token,
                    0.0 if lease is None else lease.ttl,
                    written.xmin,
                    new,
                ]
                if fields:
                    active, pending = session.active_stream_id, session.pending_user_message
                    args += (
                        _meta_json(session),
                        session.title,
                        active,
                        pending,
                        visible_in_list(session.title, count, active, pending),
                    )
                sql = _CHECKPOINTS[fields, rewrite, bool(events[0])]
            if rewrite:
                args += (start, bodies[: guess - start])
            if events[0]:
                args += events
        try:
            applied = await self._on_kept_connection(sql, args, how)
            if how is _STATUS:
                applied = applied != "INSERT 0 0"
        except self._unique_violation:
            # another task of this process appended the same messages first (an
            # unfenced save racing this one): not applied, nothing written
            return False
        if not applied:
            return False
        written.count = count
        if not locked:
            written.xmin = applied
            if lease is not None:
                written.token, written.renewed = token, now
        return True

    async def _on_kept_connection(self, sql: str, args: Sequence[Any], how: str = _VALUE) -> Any:
        """``fetchval(sql, *args)`` (``how`` :data:`_ROWS`: ``fetch``, a list of records;
        :data:`_STATUS`: ``execute``, the status string) on the connection the store
        keeps acquired for checkpoints and full loads while no other one uses it, else
        on one from the pool.

        A pool acquire and release costs about as much client CPU as the statement's
        round trip (asyncpg releases in a task under ``asyncio.shield``); a running
        turn checkpoints often and a chat UI loads the session it shows, so the store
        holds one connection out of the pool for that (only when ``max_size >= 2``, so
        other operations always have one). A failure gives the connection back to the
        pool (which closes a broken one).

        Cancellation: a caller cancelled while the statement runs goes on only once the
        statement has ended on the server. asyncpg answers the cancellation at once and
        sends the server a cancel request, which races the statement; the pool's
        release of the connection waits until the server has answered (the statement
        ran to its end or was cancelled), and that release runs in a shielding cancel
        scope, entered on this path only (a scope on every call cost a checkpoint
        ~22k client instructions).
        """
        pool = self._pool
        if pool is None or self._kept_busy or self.max_size < 2:
            con = await self._conn()  # StoreError without a pool
            assert pool is not None
            try:
                result = await getattr(con, how)(sql, *args)
            except BaseException:
                await self._release_settled(pool, con)
                raise
            await pool.release(con)
            return result
        self._kept_busy = True  # no await between the check and this: one user at a time
        try:
            if self._kept is None:
                self._kept = await pool.acquire()
                self._kept_con = self._kept.connection()
            con = self._kept_con
            # the watchdog's mark, set here rather than by the connection's wrappers:
            # one coroutine frame less on the checkpoint's path
            con.since = time.monotonic()
            try:
                if how is _VALUE:
                    result = await con.fetchval_unmarked(sql, *args)
                elif how is _STATUS:
                    result = await con.execute_unmarked(sql, *args)
                else:
                    result = await con.fetch_unmarked(sql, *args)
            except BaseException:
                # unmarked before it goes back to the pool: once there, another task may
                # take it and mark it for its own statement (the release's own timeout
                # bounds the wait for a server gone silent)
                con.since = 0.0
                kept, self._kept = self._kept, None
                await self._release_settled(pool, kept)
                raise
            con.since = 0.0
            return result
        finally:
            self._kept_busy = False
            if self._pool is None and self._kept is not None:  # closed while it ran
                kept, self._kept = self._kept, None
                await pool.release(kept)

    async def _release_settled(self, pool: Any, con: Any) -> None:
        """Give a connection whose statement failed or was cancelled back to the pool,
        shielded from cancellation: asyncpg's release waits for a cancelled statement
        to end on the server first, so when this returns the statement has landed or
        not, for good. A release error is dropped: the statement's is the one to see."""
        bound = None if self.command_timeout is None else 2 * self.command_timeout
        with self._scope(shield=True), contextlib.suppress(Exception):
            # past ``bound`` seconds asyncpg terminates the connection, as the watchdog
            # would a statement without an answer
            await pool.release(con, timeout=bound)

    async def _save_in(
        self,
        con: asyncpg.Connection,
        session: Session,
        request: SaveRequest,
        events: _Events,
    ) -> _Written | None:
        """The conditional write, inside one transaction; returns what the fast paths
        need to know of the row version it wrote (``None``: they must not apply, a
        backup row waits)."""
        sid = session.session_id
        row = await con.fetchrow(_LOCK, sid)
        if row is None:
            # A new row (locked by the insert); another process may insert it first.
            if await con.fetchval(_INSERT_SESSION, sid) is None:
                row = await con.fetchrow(_LOCK, sid)
            else:
                await con.execute("DELETE FROM tombstones WHERE session_id = $1", sid)
                await con.execute("DELETE FROM drafts WHERE session_id = $1", sid)
        # the exact count, from the rows (the row's column lags behind locked appends)
        stored = 0 if row is None else await con.fetchval(_COUNT, sid)
        # From here to the first await below nothing else runs on the event loop: the
        # rules see, and the write persists, one state of the session even though the
        # agent keeps running while a checkpoint is in flight. Only the messages the
        # write needs are encoded: a checkpoint rewrites at most the last stored one and
        # inserts the new ones (O(new data)); a full save may change any message.
        info = None if row is None else StoredInfo(stored, row[1], row[2])
        held = None if row is None or row[4] is None else HeldLease(row[3], row[4], row[5])
        check_lease(sid, held, request.lease, request.lease_mode, None if row is None else row[1])
        backup = plan_save(session, info, request)
        messages = session.messages
        count = len(messages)
        start = max(0, min(stored, count) - 1) if request.skip_index and row is not None else 0
        if request.delta is not None:
            start = request.delta.keep  # plan_save checked it against the stored count
        bodies = [orjson.dumps(m).decode() for m in messages[start:]]
        meta = _meta_json(session)
        fields = (
            session.title,
            session.updated_at,
            count,
            session.active_stream_id,
            session.pending_user_message,
            visible_in_list(
                session.title, count, session.active_stream_id, session.pending_user_message
            ),
        )
        if row is not None:
            if backup:
                await con.execute(_BACKUP, sid)
            elif row[6] is not None and (row[6] <= count or request.discard_backup):
                await con.execute("DELETE FROM backups WHERE session_id = $1", sid)
            if count < stored:
                await con.execute(
                    "DELETE FROM messages WHERE session_id = $1 AND idx >= $2", sid, count
                )
        lease = request.lease
        op = 0 if lease is None else 1 if request.lease_mode in ("claim", "renew") else 2
        sent = time.monotonic()
        xmin = await con.fetchval(
            _WRITE,
            sid,
            meta,
            *fields,
            op,
            None if lease is None else lease.owner,
            None if lease is None else lease.token,
            0.0 if lease is None else lease.ttl,
            start,
            bodies,
            *events,
        )
        if backup or (
            row is not None and row[6] is not None and row[6] > count and not request.discard_backup
        ):
            return None
        written = _Written(count, xmin)
        if op == 1:
            assert lease is not None
            written.token, written.renewed = lease.token, sent
        return written

    async def _renew(self, session_id: str, lease: Lease) -> None:
        written = self._written.get(session_id)
        if written is not None:
            # the row version this store wrote: renew it and keep the fast paths
            async def guarded() -> Any:
                async with self._conn() as con:
                    return await con.fetchval(
                        f"UPDATE sessions SET lease_expires = {_NOW} + $3"
                        " WHERE session_id = $1 AND lease_token = $2 AND xmin = $4::xid"
                        " RETURNING xmin",
                        session_id,
                        lease.token,
                        lease.ttl,
                        written.xmin,
                    )

            sent = time.monotonic()
            xmin = await self._retry(guarded)
            if xmin is not None:
                written.xmin, written.token, written.renewed = xmin, lease.token, sent
                return
            self._written.pop(session_id, None)

        async def op() -> str:
            async with self._conn() as con:
                result: str = await con.execute(
                    f"UPDATE sessions SET lease_expires = {_NOW} + $3"
                    " WHERE session_id = $1 AND lease_token = $2",
                    session_id,
                    lease.token,
                    lease.ttl,
                )
                return result

        if await self._retry(op) == "UPDATE 0":
            held = await self._lease_of(session_id)
            check_lease(session_id, held, lease, "renew", None)
            # the token matched after all (a retried renewal): nothing lost

    async def _delete(self, session_id: str) -> None:
        async def op() -> None:
            async with self._conn() as con, con.transaction():
                row = await con.fetchrow(
                    f"SELECT active_stream_id, lease_token, lease_expires - {_NOW}"
                    " FROM sessions WHERE session_id = $1 FOR UPDATE",
                    session_id,
                )
                if row is None:
                    raise not_found(session_id)
                if row[1] is not None and row[2] > 0:
                    raise SessionBusy(session_id, row[0] or "(another process)")
                await con.execute("DELETE FROM sessions WHERE session_id = $1", session_id)
                await con.execute("DELETE FROM messages WHERE session_id = $1", session_id)
                await con.execute("DELETE FROM backups WHERE session_id = $1", session_id)
                await con.execute("DELETE FROM events WHERE session_id = $1", session_id)
                await con.execute(
                    f"INSERT INTO tombstones VALUES ($1, {_NOW})"
                    " ON CONFLICT (session_id) DO NOTHING",
                    session_id,
                )

        await self._retry(op)

    async def delete(self, session_id: str) -> None:
        """Delete the session; ``recover()`` never brings it back (a tombstone row).

        :raises InvalidSessionId: for a bad id, before any I/O.
        :raises SessionNotFound: if there is no such session.
        :raises SessionBusy: while an unexpired lease is held on it (any process).
        """
        self._check_id(session_id)
        self._check_open()
        if self._unsaved.pop(session_id, None) is not None:
            await self._drop_draft(session_id)
            return
        if await self._drop_draft(session_id):
            return
        self._written.pop(session_id, None)
        await self._delete(session_id)

    # -- the tool ledger ---------------------------------------------------------------

    async def _ledger_write(
        self, sql: str, key: CallKey, args: tuple[Any, ...], lease: Lease | None
    ) -> ToolCallRecord | None:
        """Run a ledger write (:data:`_START_TOOL_CALL`, :data:`_FINISH_TOOL_CALL`) and
        return the record it wrote, else the stored one (``None``: no record).

        :raises SessionNotFound: if the session is not stored; nothing was written.
        :raises LeaseLost: if ``lease`` is not the stored one; nothing was written.
        """
        sid = key[0]

        async def op() -> Any:
            async with self._conn() as con:
                return await con.fetchrow(sql, *key, *args, None if lease is None else lease.token)

        # Shielded, like a save: a cancelled caller waits for the one statement, so the
        # record is written whole or not at all before the cancellation goes on.
        with self._scope(shield=True):
            row = await self._retry(op)
            stored, owner, token, written, existing = row
            if not stored:
                raise not_found(sid)
            check_lease(
                sid, None if token is None else HeldLease(owner, token, 0.0), lease, "renew", None
            )
            if written is None and (existing is None or existing[3] == "started"):
                # another writer's statement won a race this snapshot did not see
                existing = await self._tool_call_row(key)
        found = written if written is not None else existing
        return None if found is None else _tool_call(sid, key[1], found)

    async def _tool_call_row(self, key: CallKey) -> Any:
        async def op() -> Any:
            async with self._conn() as con:
                return await con.fetchrow(
                    f"SELECT {_TOOL_COLUMNS} FROM tool_calls"
                    " WHERE session_id = $1 AND stream_id = $2 AND call_id = $3",
                    *key,
                )

        return await self._retry(op)

    async def _start_tool_call(self, record: ToolCallRecord, lease: Lease | None) -> ToolCallRecord:
        key = (record.session_id, record.stream_id, record.call_id)
        args = (
            record.name,
            orjson.dumps(record.arguments).decode(),
            record.attempt,
            record.started_at,
        )
        found = await self._ledger_write(_START_TOOL_CALL, key, args, lease)
        assert found is not None  # inserted, or there (a row is never deleted alone)
        return found

    async def _finish_tool_call(
        self, key: CallKey, result: Any, error: str | None, lease: Lease | None
    ) -> ToolCallRecord:
        args = (
            "completed" if error is None else "failed",
            None if error is not None else orjson.dumps(result).decode(),
            error,
            time.time(),
        )
        found = await self._ledger_write(_FINISH_TOOL_CALL, key, args, lease)
        if found is None:
            raise tool_call_not_found(*key)
        return found

    async def _tool_calls(self, session_id: str, stream_id: str) -> list[ToolCallRecord]:
        async def op() -> list[Any]:
            async with self._conn() as con:
                return list(
                    await con.fetch(
                        f"SELECT {_TOOL_COLUMNS} FROM tool_calls"
                        " WHERE session_id = $1 AND stream_id = $2 ORDER BY seq",
                        session_id,
                        stream_id,
                    )
                )

        return [_tool_call(session_id, stream_id, r) for r in await self._retry(op)]

    # -- maintenance -------------------------------------------------------------------

    async def _recover(self) -> RecoveryReport:
        async def op() -> RecoveryReport:
            async with self._conn() as con, con.transaction():
                await con.execute("SELECT pg_advisory_xact_lock(hashtext($1) + 1)", self.schema)
                restored = orphaned = 0
                baks = await con.fetch(
                    "SELECT b.session_id, b.message_count,"
                    " CASE WHEN s.session_id IS NOT NULL THEN coalesce(l.idx + 1, 0) END"
                    f" FROM backups b LEFT JOIN sessions s USING (session_id) {_LAST_MESSAGE}"
                    " WHERE b.session_id NOT IN (SELECT session_id FROM tombstones)"
                )
                for sid, bak_count, live_count in baks:
                    if live_count is not None and live_count >= bak_count:
                        continue
                    await self._restore_backup(con, sid, live_count is None)
                    if live_count is None:
                        orphaned += 1
                    else:
                        restored += 1
                scanned = await con.fetchval("SELECT count(*) FROM sessions")
                await self._prune(con)
            return {
                "scanned": scanned,
                "restored": restored,
                "orphaned_backups": orphaned,
                "quarantined": 0,
            }

        return await self._retry(op)

    async def _restore_backup(self, con: asyncpg.Connection, sid: str, orphan: bool) -> None:
        row = await con.fetchrow(
            "SELECT meta, message_count, messages FROM backups WHERE session_id = $1", sid
        )
        assert row is not None  # read under the same transaction
        meta, count, bodies = row
        s = _session_from(sid, meta, count, "[" + ",".join(bodies) + "]")
        columns = (
            meta,
            s.title,
            s.updated_at,
            count,
            s.active_stream_id,
            s.pending_user_message,
            visible_in_list(s.title, count, s.active_stream_id, s.pending_user_message),
        )
        if orphan:
            await con.fetchval(_INSERT_SESSION, sid)
        # an orphan's too: no foreign key removed them with its row
        await con.execute("DELETE FROM messages WHERE session_id = $1", sid)
        await con.execute(_UPDATE_SESSION, sid, *columns)
        await con.execute(_INSERT_MESSAGES, sid, 0, list(bodies))
        await con.execute("DELETE FROM backups WHERE session_id = $1", sid)

    async def _prune(self, con: asyncpg.Connection) -> int:
        deleted = 0
        if self.event_retention is not None:
            result = await con.execute(
                f"DELETE FROM events WHERE ts < {_NOW} - $1", self.event_retention
            )
            deleted = int(result.split()[-1])
            await con.execute(
                f"DELETE FROM tool_calls WHERE coalesce(finished_at, started_at) < {_NOW} - $1",
                self.event_retention,
            )
        await con.execute(f"DELETE FROM drafts WHERE expires_at < {_NOW}")
        return deleted

    async def prune_events(self) -> int:
        """Delete durable events and tool ledger records older than ``event_retention``
        seconds (a record by the time its call finished, or started; a run of tokens,
        one row, by its last event's) and expired drafts now; returns the number of
        events rows deleted (a run of tokens is one row).

        :raises StoreError: if the database fails.
        """
        self._check_open()

        async def op() -> int:
            async with self._conn() as con:
                return await self._prune(con)

        return await self._retry(op)

    # -- documents ---------------------------------------------------------------------

    async def _read_document(self, name: str) -> tuple[bytes, int] | None:
        async def op() -> Any:
            async with self._conn() as con:
                return await con.fetchrow(
                    "SELECT body, version FROM documents WHERE name = $1", name
                )

        row = await self._retry(op)
        return None if row is None else (bytes(row[0]), int(row[1]))

    async def _write_document(self, name: str, data: bytes, expected: int | None) -> int:
        async def op() -> Any:
            async with self._conn() as con:
                if expected is None:
                    return await con.fetchval(
                        "INSERT INTO documents VALUES ($1, $2, 1)"
                        " ON CONFLICT (name) DO NOTHING RETURNING version",
                        name,
                        data,
                    )
                return await con.fetchval(
                    "UPDATE documents SET body = $2, version = version + 1"
                    " WHERE name = $1 AND version = $3 RETURNING version",
                    name,
                    data,
                    expected,
                )

        version = await self._retry(op)
        if version is None:
            check_document_version(name, await self._read_document(name), expected)
            raise WriteConflict(f"document {name!r} changed while it was written")
        return int(version)

    # -- new sessions shared with other processes ------------------------------------

    async def _share(self, session: Session) -> None:
        """A row in ``drafts`` for ``draft_ttl`` seconds. The table is UNLOGGED: not
        durable (a database crash empties it), never listed, never recovered; the
        session's first save deletes the row."""
        body = orjson.dumps(session.to_dict()).decode()

        async def op() -> None:
            async with self._conn() as con:
                await con.execute(
                    f"INSERT INTO drafts VALUES ($1, $2, {_NOW} + $3)"
                    " ON CONFLICT (session_id) DO UPDATE SET body = excluded.body,"
                    " expires_at = excluded.expires_at",
                    session.session_id,
                    body,
                    self.draft_ttl,
                )

        await self._retry(op)

    async def _draft(self, session_id: str) -> Session:
        async def op() -> Any:
            async with self._conn() as con:
                return await con.fetchval(
                    f"SELECT body FROM drafts WHERE session_id = $1 AND expires_at > {_NOW}",
                    session_id,
                )

        body = await self._retry(op)
        if body is None:
            raise not_found(session_id)
        return Session.from_dict(orjson.loads(body))

    async def _drop_draft(self, session_id: str) -> bool:
        async def op() -> str:
            async with self._conn() as con:
                result: str = await con.execute(
                    "DELETE FROM drafts WHERE session_id = $1", session_id
                )
                return result

        return await self._retry(op) != "DELETE 0"

    async def load(self, session_id: str) -> Session:
        """The whole session: the stored row first (another process may have saved a
        session this one created), then an unsaved new session of this process, then
        one shared by another process.

        :raises InvalidSessionId: for a bad id, before any I/O.
        :raises SessionNotFound: if there is no such session.
        """
        self._check_id(session_id)
        self._check_open()
        try:
            return await self._load(session_id)
        except SessionNotFound:
            unsaved = self._unsaved.get(session_id)
            if unsaved is None:
                raise
            return unsaved.copy()

    async def load_metadata(self, session_id: str) -> Session:
        """The session without its messages; looked up in the order of :meth:`load`.

        :raises InvalidSessionId: for a bad id, before any I/O.
        :raises SessionNotFound: if there is no such session.
        """
        self._check_id(session_id)
        self._check_open()
        try:
            return await self._load_metadata(session_id)
        except SessionNotFound:
            unsaved = self._unsaved.get(session_id)
            if unsaved is None:
                raise
            return Session.from_dict(unsaved.meta_dict(), metadata_only=True)

    async def exists(self, session_id: str) -> bool:
        """True if the session is stored, held unsaved here, or shared as a new session
        by another process.

        :raises InvalidSessionId: for a bad id, before any I/O.
        """
        if await super().exists(session_id):
            return True
        try:
            await self._draft(session_id)
        except LookupError:
            return False
        return True
