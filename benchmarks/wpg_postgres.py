"""WPG: W1, W2, W3, W7 and W8 on PostgreSQL, PostgresStore beside the peers on the same
server in the same run (``RUNTIME_BENCH_POSTGRES_DSN``, else ``RUNTIME_TEST_POSTGRES_DSN``;
skipped without either).

* W1: append one message to a session of N and make it durable: PostgresStore's
  checkpoint (``save(skip_index=True, delta=..., lease=...)``, as the runner makes it
  for a running turn, which holds the session's lease: claimed by a save before the
  timed appends, ttl 30 s, the runtime's default), LangGraph
  ``AsyncPostgresSaver`` (one ``ainvoke`` per message), the OpenAI Agents SDK
  ``SQLAlchemySession`` on asyncpg (``add_items``), and the floor: a bare one-row
  ``INSERT`` + ``COMMIT`` on asyncpg. Each timed append comes right after one timed
  floor INSERT and its ratio is taken against those: the server's background work left
  by the system before it (LangGraph writes up to megabytes of WAL per append at large
  N, then the checkpointer and the background writer catch up) then weighs on the
  append and its floor alike, not on the append only. The floor row itself is
  measured at the start of each pass.
* W2: bytes of WAL the server wrote per append (``pg_current_wal_lsn`` around it, read
  on one connection kept open; the floor's INSERTs are bracketed the same way).
* W3: full load of the session, against a bare ``SELECT`` of the same message rows;
  like W1, each timed load comes right after one timed floor ``SELECT`` and its ratio
  is taken against those (the floor row is measured at the start of each pass).
* W7: first page of 50 and a full listing of S sessions.
* W8: ``recover()`` over S sessions.
* The resume sweep's read, with 10 of the S sessions holding an active stream: every
  page of ``list_sessions(limit=200)`` (what each sweep read before the store listed
  active sessions) against ``list_sessions(limit=200, active=True)``.

Each system gets its own database, created and dropped here. At each N every system is
built once, then measured in interleaved passes (the order rotates each pass), each pass
starting with the INSERT floor; cells are medians over passes with their spread, and the
ratios are taken pass by pass against the floors of the same pass (:mod:`._passes`).

Every timed operation, a floor's or a system's, starts in the same collector state: the
objects built before the passes (every system's history, the peers' modules) are frozen
(``gc.freeze()``) and a ``gc.collect()`` of the rest runs just before the timer starts.
Without that, a full collection (~270 ms at N = 10k, the whole process's heap) landed
inside whichever timed operation crossed the collector's threshold, a floor SELECT as
often as a load, and one such sample decided its pass's median: the source of W3's
spreads of 200-400 %. The collections an operation's own allocations trigger stay inside
its time; how many full ones ran inside timed operations is in the JSON (``gc``).
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._config import Context
from ._gcwatch import GcWatch
from ._labels import size_label
from ._passes import fmt_spread, over_passes, pass_medians, ratio_by_pass, rotated, spread_note
from ._report import Result, Table, fmt
from ._shapes import appended_message, history
from ._stats import median, now_ms

ID = "WPG"
TITLE = "PostgreSQL: W1 append, W2 WAL bytes, W3 load, W7 list, W8 recover"

SYSTEMS = ("runtime", "langgraph_pg", "openai_sqlalchemy")
LABELS = {
    "runtime": "runtime PostgresStore",
    "langgraph_pg": "LangGraph AsyncPostgresSaver",
    "openai_sqlalchemy": "OpenAI Agents SQLAlchemySession (asyncpg)",
    "floor": "bare one-row INSERT + COMMIT (floor)",
    "select": "bare SELECT of the message rows (floor)",
}


def dsn() -> str | None:
    return os.environ.get("RUNTIME_BENCH_POSTGRES_DSN") or os.environ.get(
        "RUNTIME_TEST_POSTGRES_DSN"
    )


def _with_db(base: str, name: str, scheme: str = "postgresql") -> str:
    parts = urlsplit(base)
    return urlunsplit(parts._replace(scheme=scheme, path="/" + name))


class _Clock:
    """Times one operation from a settled collector (see the module docstring) and
    counts the timed operations a full collection ran inside, per side."""

    def __init__(self) -> None:
        self.watch = GcWatch()
        self.full: dict[str, int] = {}
        self._t0 = 0.0
        self._full0 = 0

    def start(self) -> None:
        gc.collect()
        self._full0 = self.watch.count[2]
        self._t0 = now_ms()

    def stop(self, side: str) -> float:
        """Milliseconds since :meth:`start`."""
        elapsed = now_ms() - self._t0
        if self.watch.count[2] != self._full0:
            self.full[side] = self.full.get(side, 0) + 1
        return elapsed


_CLOCK = _Clock()


class _Databases:
    """Creates a database per system and drops them all at the end."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.names: list[str] = []

    async def new(self) -> str:
        import asyncpg

        name = "bench_" + uuid.uuid4().hex[:12]
        con = await asyncpg.connect(self.base)
        try:
            await con.execute(f'CREATE DATABASE "{name}"')
        finally:
            await con.close()
        self.names.append(name)
        return name

    async def drop_all(self) -> None:
        import asyncpg

        con = await asyncpg.connect(self.base)
        try:
            for name in self.names:
                await con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await con.close()


class _Wal:
    """The server's WAL position, read on one connection kept open for the whole run.

    Every timed write (the floor's INSERTs and each system's appends alike) sits
    between two of these reads. A connection opened and closed per read would leave a
    backend exiting while the next write is timed, on the floor's side never."""

    def __init__(self) -> None:
        self.con: Any = None

    async def open(self, base: str) -> None:
        import asyncpg

        self.con = await asyncpg.connect(base)

    async def lsn(self) -> int:
        value: int = await self.con.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        return int(value)

    async def close(self) -> None:
        if self.con is not None:
            await self.con.close()


class _Runtime:
    def __init__(self, url: str) -> None:
        from runtime.stores.postgres import PostgresStore

        self.store = PostgresStore(url, max_size=2)
        self.session: Any = None
        self.lease: Any = None

    async def build(self, messages: list[dict[str, Any]]) -> None:
        from runtime.stores.abc import Lease

        await self.store.open()
        self.session = self.store.new_session(title="bench")
        self.session.messages.extend(messages)
        await self.store.save(self.session)
        # a running turn's lease (Runtime.lease_ttl's default), claimed as start_turn does
        self.lease = Lease("bench", uuid.uuid4().hex, 30.0)
        await self.store.save(self.session, lease=self.lease, lease_mode="claim")

    async def append(self, message: dict[str, Any]) -> None:
        from runtime.stores.abc import SaveDelta

        base = len(self.session.messages)
        self.session.messages.append(message)
        # the runner's checkpoint: one message appended, no field changed, the lease
        await self.store.save(
            self.session, skip_index=True, delta=SaveDelta.appended(base), lease=self.lease
        )

    async def load(self) -> int:
        return len((await self.store.load(self.session.session_id)).messages)

    async def close(self) -> None:
        await self.store.aclose()


class _LangGraph:
    def __init__(self, url: str) -> None:
        self.url = url
        self._cm: Any = None
        self.graph: Any = None
        self.config: Any = {"configurable": {"thread_id": "bench"}}

    async def build(self, messages: list[dict[str, Any]]) -> None:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from langgraph.graph import END, START, StateGraph

        from .peers.langgraph import _record, _State

        self._cm = AsyncPostgresSaver.from_conn_string(self.url)
        saver = await self._cm.__aenter__()
        await saver.setup()
        builder = StateGraph(_State)
        builder.add_node("record", _record)
        builder.add_edge(START, "record")
        builder.add_edge("record", END)
        self.graph = builder.compile(checkpointer=saver)
        await self.graph.ainvoke({"messages": messages}, self.config)

    async def append(self, message: dict[str, Any]) -> None:
        await self.graph.ainvoke({"messages": [message]}, self.config)

    async def load(self) -> int:
        return len((await self.graph.aget_state(self.config)).values["messages"])

    async def close(self) -> None:
        if self._cm is not None:
            await self._cm.__aexit__(None, None, None)


class _OpenAI:
    def __init__(self, url: str) -> None:
        self.url = url
        self.session: Any = None

    async def build(self, messages: list[dict[str, Any]]) -> None:
        from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession

        self.session = SQLAlchemySession.from_url(
            "bench",
            url=self.url.replace("postgresql://", "postgresql+asyncpg://", 1),
            create_tables=True,
        )
        await self.session.add_items(messages)

    async def append(self, message: dict[str, Any]) -> None:
        await self.session.add_items([message])

    async def load(self) -> int:
        return len(await self.session.get_items())

    async def close(self) -> None:
        if self.session is not None:
            await self.session.engine.dispose()


def _missing(name: str) -> str | None:
    import importlib.util

    need = {
        "runtime": ("asyncpg",),
        "langgraph_pg": ("langgraph.checkpoint.postgres", "psycopg"),
        "openai_sqlalchemy": ("agents", "sqlalchemy", "asyncpg"),
    }[name]
    for module in need:
        try:
            if importlib.util.find_spec(module) is None:
                return "not installed"
        except (ModuleNotFoundError, ValueError):
            return "not installed"
    return None


_FACTORIES: dict[str, Callable[[str], Any]] = {
    "runtime": _Runtime,
    "langgraph_pg": _LangGraph,
    "openai_sqlalchemy": _OpenAI,
}


class _Floors:
    """The two floors on connections kept open: a bare one-row INSERT + COMMIT
    (autocommit) of the appended message, and a bare SELECT of the message rows a
    system holds (JSON text) with ``orjson.loads`` of each: the N of the history, then
    the messages W1 appended to it, the same ones in the same order (``extra`` of
    them stored, each ``select`` reads the first ``count``)."""

    def __init__(self) -> None:
        self.insert_con: Any = None
        self.select_con: Any = None
        self._body = ""

    async def open(
        self, insert_url: str, select_url: str, messages: list[dict[str, Any]], extra: int
    ) -> None:
        import asyncpg
        import orjson

        self.insert_con = await asyncpg.connect(insert_url)
        await self.insert_con.execute(
            "CREATE TABLE IF NOT EXISTS floor (id serial PRIMARY KEY, body text NOT NULL)"
        )
        self._body = orjson.dumps(appended_message(0)).decode()
        await self.insert_con.execute("INSERT INTO floor (body) VALUES ($1)", self._body)
        self.select_con = await asyncpg.connect(select_url)
        await self.select_con.execute(
            "CREATE TABLE rows (idx integer PRIMARY KEY, body text NOT NULL)"
        )
        appended = [appended_message(i) for i in range(extra)]
        await self.select_con.copy_records_to_table(
            "rows",
            records=[(i, orjson.dumps(m).decode()) for i, m in enumerate(messages + appended)],
        )

    async def inserts(self, wal: _Wal, reps: int, wal_bytes: list[float]) -> list[float]:
        """``reps`` timed INSERTs, each between two WAL reads like an append's."""
        out = []
        for _ in range(reps):
            before = await wal.lsn()
            out.append(await self.insert())
            wal_bytes.append(await wal.lsn() - before)
        return out

    async def insert(self) -> float:
        """One timed INSERT + COMMIT (ms)."""
        _CLOCK.start()
        await self.insert_con.execute("INSERT INTO floor (body) VALUES ($1)", self._body)
        return _CLOCK.stop("floor")

    async def selects(self, reps: int, count: int) -> list[float]:
        """``reps`` timed SELECTs of the first ``count`` message rows (ms each)."""
        import orjson

        out = []
        for _ in range(reps):
            _CLOCK.start()
            rows = await self.select_con.fetch(
                "SELECT body FROM rows WHERE idx < $1 ORDER BY idx", count
            )
            [orjson.loads(r[0]) for r in rows]
            out.append(_CLOCK.stop("select"))
        return out

    async def close(self) -> None:
        for con in (self.insert_con, self.select_con):
            if con is not None:
                await con.close()


class _Cell:
    """One system at one N: built once, then measured a batch per pass."""

    def __init__(self, name: str, system: Any, reps: int) -> None:
        self.name = name
        self.system = system
        self.reps = reps
        self.appended = 0
        self.append: list[list[float]] = []
        #: per pass, the floor INSERT timed just before each of this system's appends
        self.floor: list[list[float]] = []
        self.wal: list[float] = []
        self.load: list[list[float]] = []
        #: per pass, the floor SELECT timed just before each of this system's loads
        self.select: list[list[float]] = []

    async def appends(self, wal: _Wal, reps: int, floor: _Floors | None = None) -> None:
        """``reps`` appends; timed (samples and WAL bytes kept) when ``floor`` is given,
        each right after one timed floor INSERT, so the system and its floor share the
        same moment of the server's background work (see the module docstring)."""
        samples, floors = [], []
        for _ in range(reps):
            if floor is not None:
                floors.append(await floor.insert())
            # built outside the timer, as in W1 (the floor's body is built once)
            message = appended_message(self.appended)
            before = await wal.lsn()
            _CLOCK.start()
            await self.system.append(message)
            elapsed = _CLOCK.stop(self.name)
            self.appended += 1
            if floor is not None:
                samples.append(elapsed)
                self.wal.append(await wal.lsn() - before)
        if floor is not None:
            self.append.append(samples)
            self.floor.append(floors)

    async def loads(self, n: int, reps: int, floor: _Floors) -> None:
        """``reps`` timed loads, each right after one timed floor ``SELECT`` (as
        :meth:`appends`: the system and its floor share the same moment of the
        server's and the client's background work)."""
        samples, selects = [], []
        for _ in range(reps):
            # the same rows as the load's: W1's appends grew the session past N (by
            # up to 42 messages of ~1.25 KB at N = 100: 1.8x the bytes of N rows)
            selects += await floor.selects(1, n + self.appended)
            _CLOCK.start()
            count = await self.system.load()
            samples.append(_CLOCK.stop(self.name))
            if count != n + self.appended:
                raise RuntimeError(f"{self.name} loaded {count} messages, not {n + self.appended}")
        self.load.append(samples)
        self.select.append(selects)


async def _list_every_page(store: Any, limit: int, active: bool) -> int:
    """Follow ``list_sessions(limit=limit, active=active)`` to its last page; the count."""
    cursor, seen = None, 0
    while True:
        page = await store.list_sessions(limit=limit, cursor=cursor, active=active)
        seen += len(page.sessions)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


async def _listing(url: str, sizes: tuple[int, ...], reps: int) -> dict[int, dict[str, float]]:
    """W7/W8 on PostgresStore: S sessions inserted in bulk through the store's own
    tables, then the first page, the full listing and ``recover()`` are timed."""
    import asyncpg

    from runtime import Session
    from runtime.stores.postgres import PostgresStore

    out: dict[int, dict[str, float]] = {}
    for s in sizes:
        schema = "list_" + uuid.uuid4().hex[:8]
        store = PostgresStore(url, schema=schema, max_size=2)
        await store.open()
        try:
            session = Session("seed", title="seed", messages=history(2))
            await store.save(session)
            con = await asyncpg.connect(url, server_settings={"search_path": schema})
            try:
                await con.execute(
                    """INSERT INTO sessions (session_id, meta, title, updated_at, message_count,
                           visible)
                       SELECT 's' || g,
                              jsonb_set(jsonb_set((SELECT meta FROM sessions
                                                    WHERE session_id = 'seed')::jsonb,
                                                  '{updated_at}', to_jsonb(1.7e9 + g)),
                                        '{title}', to_jsonb('session ' || g))::text,
                              'session ' || g, 1.7e9 + g, 2, true
                         FROM generate_series(1, $1) g""",
                    s - 1,
                )
                await con.execute(
                    "UPDATE sessions SET active_stream_id = 'stream-' || session_id"
                    " WHERE session_id IN (SELECT 's' || (g * ($1 / 10))"
                    " FROM generate_series(1, 10) g)",
                    s - 1,
                )
                await con.execute("ANALYZE sessions")
            finally:
                await con.close()
            page, full, rec, every, active = [], [], [], [], []
            for _ in range(reps):
                for times, limit, only_active, expect in (
                    (every, 200, False, s),
                    (active, 200, True, 10),
                    (full, 1000, False, s),
                ):
                    t0 = now_ms()
                    seen = await _list_every_page(store, limit, only_active)
                    times.append(now_ms() - t0)
                    if seen != expect:
                        raise RuntimeError(f"listed {seen} sessions, not {expect}")
                t0 = now_ms()
                await store.list_sessions(limit=50)
                page.append(now_ms() - t0)
                t0 = now_ms()
                report = await store.recover()
                rec.append(now_ms() - t0)
                if report["scanned"] != s:
                    raise RuntimeError(f"recover() scanned {report['scanned']} of {s}")
            out[s] = {
                "page": median(page),
                "all": median(full),
                "recover": median(rec),
                "sweep_every_page": median(every),
                "sweep_active": median(active),
            }
        finally:
            await store.aclose()
    return out


async def run(ctx: Context) -> Result:
    """All five PostgreSQL tables (or a note saying why they were skipped)."""
    res = Result(ID, TITLE, "ms")
    base = dsn()
    if base is None:
        res.notes["all"] = "skipped: no RUNTIME_BENCH_POSTGRES_DSN / RUNTIME_TEST_POSTGRES_DSN"
        table = Table(TITLE, ["note"])
        table.add(res.notes["all"])
        res.tables.append(table)
        return res
    cfg = ctx.config
    sizes = cfg.sizes
    dbs = _Databases(base)
    notes = {name: why for name in SYSTEMS if (why := _missing(name)) is not None}
    floors: dict[int, list[list[float]]] = {}
    floor_wal: dict[int, list[float]] = {n: [] for n in sizes}
    selects: dict[int, list[list[float]]] = {}
    cells: dict[str, dict[int, _Cell]] = {name: {} for name in SYSTEMS if name not in notes}
    wal = _Wal()
    _CLOCK.full.clear()
    try:
        await wal.open(base)
        insert_db = _with_db(base, await dbs.new())
        with _CLOCK.watch:
            for n in sizes:
                await _size(ctx, wal, dbs, insert_db, n, cells, (floors, floor_wal[n]), selects)
        listing = await _listing(_with_db(base, await dbs.new()), cfg.store_sizes, cfg.list_reps)
    finally:
        await wal.close()
        await dbs.drop_all()
    _tables(ctx, res, floors, selects, cells, notes, listing, floor_wal)
    return res


async def _size(
    ctx: Context,
    wal: _Wal,
    dbs: _Databases,
    insert_db: str,
    n: int,
    cells: dict[str, dict[int, _Cell]],
    insert_floor: tuple[dict[int, list[list[float]]], list[float]],
    selects: dict[int, list[list[float]]],
) -> None:
    """Every system at one N in interleaved passes (the order rotates each pass)."""
    cfg = ctx.config
    base = dbs.base
    floors, floor_wal = insert_floor
    floor = _Floors()
    running: list[_Cell] = []
    try:
        # the most messages any system appends at this N (warmup and every pass)
        extra = cfg.warmup + cfg.passes * cfg.append_reps
        await floor.open(insert_db, _with_db(base, await dbs.new()), history(n), extra)
        for name in cells:
            reps = cfg.langgraph_reps(n) if name == "langgraph_pg" else cfg.append_reps
            cell = _Cell(name, _FACTORIES[name](_with_db(base, await dbs.new())), reps)
            running.append(cell)
            await cell.system.build(history(n))
            await cell.appends(wal, cfg.warmup)
            cells[name][n] = cell
        # what was built so far stays out of every collection timed below
        gc.collect()
        gc.freeze()
        floors[n], selects[n] = [], []
        for p in range(cfg.passes):
            print(f"  WPG N={n} pass {p + 1}/{cfg.passes}", flush=True)
            floors[n].append(await floor.inserts(wal, max(cfg.append_reps * 3, 24), floor_wal))
            for cell in rotated(running, p):
                await cell.appends(wal, cell.reps, floor)
            # the start-of-pass SELECT reads what the runtime's session holds then
            held = n + (running[0].appended if running else 0)
            selects[n].append(await floor.selects(cfg.pg_load_reps, held))
            for cell in rotated(running, p):
                await cell.loads(n, cfg.pg_load_reps, floor)
    finally:
        gc.unfreeze()
        await floor.close()
        for cell in running:
            await cell.system.close()


def _tables(
    ctx: Context,
    res: Result,
    floors: dict[int, list[list[float]]],
    selects: dict[int, list[list[float]]],
    cells: dict[str, dict[int, _Cell]],
    notes: dict[str, str],
    listing: dict[int, dict[str, float]],
    floor_wal: dict[int, list[float]],
) -> None:
    cfg = ctx.config
    sizes = cfg.sizes
    first, last = sizes[0], sizes[-1]
    floor = {n: over_passes(pass_medians(floors[n])) for n in sizes}
    select = {n: over_passes(pass_medians(selects[n])) for n in sizes}
    res.extra = {
        "floor_insert_ms": {str(n): f.to_json() for n, f in floor.items()},
        "floor_wal_bytes": {str(n): median(floor_wal[n]) for n in sizes},
        "select_ms": {str(n): f.to_json() for n, f in select.items()},
        "listing": {str(n): v for n, v in listing.items()},
        "passes": cfg.passes,
        # timed operations (W1 and W3, all N) a full collection ran inside, per side
        "gc": {"full_collections_inside": dict(_CLOCK.full)},
    }
    res.notes.update(notes)
    cols = [
        "system",
        *(f"N={size_label(n)}" for n in sizes),
        f"{size_label(sizes[-1])}/{size_label(sizes[0])}",
    ]
    w1 = Table(
        "WPG W1 append + durable on PostgreSQL (median ms ~spread; x = ratio to INSERT+COMMIT, "
        "pass by pass)",
        cols,
    )
    w1.add(LABELS["floor"], *(fmt_spread(floor[n]) for n in sizes))
    w2 = Table("WPG W2 WAL bytes per append (median)", cols[:-1])
    w2.add(LABELS["floor"], *(f"{median(floor_wal[n]):,.0f}" for n in sizes))
    w3 = Table(
        "WPG W3 full load on PostgreSQL (median ms ~spread; x = ratio to the bare SELECT, "
        "pass by pass)",
        cols,
    )
    w3.add(LABELS["select"], *(fmt_spread(select[n]) for n in sizes))
    for name in SYSTEMS:
        if name in notes:
            for t in (w1, w2, w3):
                t.add(LABELS[name], notes[name])
            continue
        by_n = cells[name]
        app = {n: over_passes(pass_medians(by_n[n].append)) for n in sizes}
        load = {n: over_passes(pass_medians(by_n[n].load)) for n in sizes}
        wal = {n: median(by_n[n].wal) for n in sizes}
        app_x = {n: ratio_by_pass(by_n[n].append, by_n[n].floor) for n in sizes}
        # against the floor measured at the start of each pass (the ratio before
        # the adjacent floor), kept for comparison
        app_x_start = {n: ratio_by_pass(by_n[n].append, floors[n]) for n in sizes}
        load_x = {n: ratio_by_pass(by_n[n].load, by_n[n].select) for n in sizes}
        load_x_start = {n: ratio_by_pass(by_n[n].load, selects[n]) for n in sizes}
        res.systems[name] = {
            str(n): {
                "append_ms": app[n].to_json(),
                "append_x_floor": app_x[n].to_json(),
                "append_x_pass_start_floor": app_x_start[n].to_json(),
                "wal_bytes": wal[n],
                "load_ms": load[n].to_json(),
                "load_x_select": load_x[n].to_json(),
                "load_x_pass_start_select": load_x_start[n].to_json(),
            }
            for n in sizes
        }
        w1.add(
            LABELS[name],
            *(f"{fmt_spread(app[n])} ({fmt_spread(app_x[n], ratio=True)})" for n in sizes),
            fmt_spread(ratio_by_pass(by_n[last].append, by_n[first].append), ratio=True),
        )
        w2.add(LABELS[name], *(f"{wal[n]:,.0f}" for n in sizes))
        w3.add(
            LABELS[name],
            *(f"{fmt_spread(load[n])} ({fmt_spread(load_x[n], ratio=True)})" for n in sizes),
            fmt_spread(ratio_by_pass(by_n[last].load, by_n[first].load), ratio=True),
        )
    w1.footnotes.append(spread_note(cfg.passes))
    w1.footnotes.append(
        f"{cfg.append_reps} timed appends per cell and pass after {cfg.warmup} untimed "
        "(LangGraph capped at large N); each system on its own database of one server; the "
        "floor is autocommit; its row is measured at the start of each pass (and gives W2's "
        "floor), each system's x against one floor INSERT timed just before each of its "
        "appends"
    )
    _start_of_pass_note(w1, res, sizes, "append_x_pass_start_floor", "floor")
    w3.footnotes.append(
        f"{cfg.pg_load_reps} timed loads per cell and pass; the SELECT row is measured at the "
        "start of each pass, each system's x against one floor SELECT timed just before "
        "each of its loads; every timed operation (W1's too) starts after a gc.collect(), "
        "with what was built before the passes frozen (gc.freeze())"
    )
    _start_of_pass_note(w3, res, sizes, "load_x_pass_start_select", "SELECT")
    w7 = Table(
        "WPG W7/W8 PostgresStore listing and recover() (median ms)",
        [
            "S",
            "first page of 50",
            "all pages",
            "recover()",
            "sweep: every page of 200",
            "sweep: active=True",
        ],
    )
    for s, row in listing.items():
        w7.add(
            size_label(s),
            fmt(row["page"]),
            fmt(row["all"]),
            fmt(row["recover"]),
            fmt(row["sweep_every_page"]),
            fmt(row["sweep_active"]),
        )
    w7.footnotes.append(
        "sweep: a resume sweep's read with 10 of the S sessions holding an active stream "
        "(each node repeats it every lease_ttl / 2 s): every page of "
        "list_sessions(limit=200), as sweeps read before, against list_sessions(limit=200, "
        "active=True)"
    )
    res.tables.extend([w1, w2, w3, w7])


def _start_of_pass_note(
    table: Table, res: Result, sizes: tuple[int, ...], key: str, floor: str
) -> None:
    """A footnote with the runtime row's ratio against the floor measured at the start
    of each pass (``key`` in its JSON cells), beside the adjacent floor the table uses."""
    if "runtime" not in res.systems:
        return
    cells = res.systems["runtime"]
    table.footnotes.append(
        f"runtime PostgresStore against the start-of-pass {floor} instead: "
        + ", ".join(f"N={size_label(n)} {cells[str(n)][key]['median']:.2f}x" for n in sizes)
    )
