"""WPG: W1, W2, W3, W7 and W8 on PostgreSQL, PostgresStore beside the peers on the same
server in the same run (``RUNTIME_BENCH_POSTGRES_DSN``, else ``RUNTIME_TEST_POSTGRES_DSN``;
skipped without either).

* W1: append one message to a session of N and make it durable: PostgresStore's
  checkpoint (``save(skip_index=True, delta=...)``, as the runner makes it), LangGraph
  ``AsyncPostgresSaver`` (one ``ainvoke`` per message), the OpenAI Agents SDK
  ``SQLAlchemySession`` on asyncpg (``add_items``), and the floor: a bare one-row
  ``INSERT`` + ``COMMIT`` on asyncpg.
* W2: bytes of WAL the server wrote per append (``pg_current_wal_lsn`` around it).
* W3: full load of the session, against a bare ``SELECT`` of the same message rows.
* W7: first page of 50 and a full listing of S sessions.
* W8: ``recover()`` over S sessions.

Each system gets its own database, created and dropped here; passes interleave the
systems; medians are reported with ratios to the floors of the same run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._config import Context
from ._labels import size_label
from ._report import Result, Table, fmt, fmt_ratio
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


async def _wal_lsn(base: str) -> int:
    import asyncpg

    con = await asyncpg.connect(base)
    try:
        value: int = await con.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        return int(value)
    finally:
        await con.close()


class _Runtime:
    def __init__(self, url: str) -> None:
        from runtime.stores.postgres import PostgresStore

        self.store = PostgresStore(url, max_size=2)
        self.session: Any = None

    async def build(self, messages: list[dict[str, Any]]) -> None:
        await self.store.open()
        self.session = self.store.new_session(title="bench")
        self.session.messages.extend(messages)
        await self.store.save(self.session)

    async def append(self, message: dict[str, Any]) -> None:
        from runtime.stores.abc import SaveDelta

        base = len(self.session.messages)
        self.session.messages.append(message)
        # the runner's checkpoint: one message appended, no field changed
        await self.store.save(self.session, skip_index=True, delta=SaveDelta.appended(base))

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


async def _floor_insert(url: str, reps: int) -> list[float]:
    """A bare one-row INSERT + COMMIT (autocommit) of the appended message, on asyncpg."""
    import asyncpg
    import orjson

    con = await asyncpg.connect(url)
    try:
        await con.execute("CREATE TABLE floor (id serial PRIMARY KEY, body text NOT NULL)")
        body = orjson.dumps(appended_message(0)).decode()
        await con.execute("INSERT INTO floor (body) VALUES ($1)", body)
        out = []
        for _ in range(reps):
            t0 = now_ms()
            await con.execute("INSERT INTO floor (body) VALUES ($1)", body)
            out.append(now_ms() - t0)
        return out
    finally:
        await con.close()


async def _floor_select(url: str, messages: list[dict[str, Any]], reps: int) -> list[float]:
    """A bare SELECT of N message rows (JSON text) and ``orjson.loads`` of each."""
    import asyncpg
    import orjson

    con = await asyncpg.connect(url)
    try:
        await con.execute("CREATE TABLE rows (idx integer PRIMARY KEY, body text NOT NULL)")
        await con.copy_records_to_table(
            "rows", records=[(i, orjson.dumps(m).decode()) for i, m in enumerate(messages)]
        )
        out = []
        for _ in range(reps):
            t0 = now_ms()
            rows = await con.fetch("SELECT body FROM rows ORDER BY idx")
            [orjson.loads(r[0]) for r in rows]
            out.append(now_ms() - t0)
        return out
    finally:
        await con.close()


async def _cell(
    name: str, url: str, base_dsn: str, n: int, warmup: int, reps: int, load_reps: int
) -> dict[str, list[float]]:
    system = _FACTORIES[name](url)
    out: dict[str, list[float]] = {"append": [], "wal": [], "load": []}
    try:
        await system.build(history(n))
        for i in range(warmup + reps):
            before = await _wal_lsn(base_dsn)
            t0 = now_ms()
            await system.append(appended_message(i))
            elapsed = now_ms() - t0
            if i >= warmup:
                out["append"].append(elapsed)
                out["wal"].append(await _wal_lsn(base_dsn) - before)
        for _ in range(load_reps):
            t0 = now_ms()
            count = await system.load()
            out["load"].append(now_ms() - t0)
            if count != n + warmup + reps:
                raise RuntimeError(f"{name} loaded {count} messages, expected {n + warmup + reps}")
    finally:
        await system.close()
    return out


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
                await con.execute("ANALYZE sessions")
            finally:
                await con.close()
            page, full, rec = [], [], []
            for _ in range(reps):
                t0 = now_ms()
                await store.list_sessions(limit=50)
                page.append(now_ms() - t0)
                t0 = now_ms()
                cursor, seen = None, 0
                while True:
                    p = await store.list_sessions(limit=1000, cursor=cursor)
                    seen += len(p.sessions)
                    if p.next_cursor is None:
                        break
                    cursor = p.next_cursor
                full.append(now_ms() - t0)
                if seen != s:
                    raise RuntimeError(f"listed {seen} of {s} sessions")
                t0 = now_ms()
                report = await store.recover()
                rec.append(now_ms() - t0)
                if report["scanned"] != s:
                    raise RuntimeError(f"recover() scanned {report['scanned']} of {s}")
            out[s] = {"page": median(page), "all": median(full), "recover": median(rec)}
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
    try:
        floor_db = _with_db(base, await dbs.new())
        floor = median(await _floor_insert(floor_db, max(cfg.append_reps * 3, 30)))
        selects = {
            n: median(
                await _floor_select(
                    _with_db(base, await dbs.new()), history(n), cfg.load_reps * cfg.passes
                )
            )
            for n in sizes
        }
        cells: dict[str, dict[int, dict[str, list[float]]]] = {s: {} for s in SYSTEMS}
        notes: dict[str, str] = {}
        for n in sizes:
            for name in SYSTEMS:  # interleaved: every system at one N before the next N
                why = _missing(name)
                if why is not None:
                    notes[name] = why
                    continue
                reps = cfg.append_reps * cfg.passes
                if name == "langgraph_pg":
                    reps = min(reps, cfg.langgraph_reps(n) * cfg.passes)
                url = _with_db(base, await dbs.new())
                cells[name][n] = await _cell(
                    name, url, base, n, cfg.warmup, reps, cfg.load_reps * cfg.passes
                )
        listing = await _listing(_with_db(base, await dbs.new()), cfg.store_sizes, cfg.list_reps)
    finally:
        await dbs.drop_all()
    res.extra = {
        "floor_insert_ms": floor,
        "select_ms": {str(n): v for n, v in selects.items()},
        "listing": {str(n): v for n, v in listing.items()},
    }
    cols = [
        "system",
        *(f"N={size_label(n)}" for n in sizes),
        f"{size_label(sizes[-1])}/{size_label(sizes[0])}",
    ]
    w1 = Table(
        "WPG W1 append + durable on PostgreSQL (median ms; x = ratio to INSERT+COMMIT)", cols
    )
    w1.add(LABELS["floor"], fmt(floor))
    w2 = Table("WPG W2 WAL bytes per append (median)", cols[:-1])
    w3 = Table("WPG W3 full load on PostgreSQL (median ms; x = ratio to the bare SELECT)", cols)
    w3.add(LABELS["select"], *(fmt(selects[n]) for n in sizes))
    for name in SYSTEMS:
        if name in notes:
            for t in (w1, w2, w3):
                t.add(LABELS[name], notes[name])
            continue
        app = {n: median(cells[name][n]["append"]) for n in sizes}
        wal = {n: median(cells[name][n]["wal"]) for n in sizes}
        load = {n: median(cells[name][n]["load"]) for n in sizes}
        res.systems[name] = {
            str(n): {"append_ms": app[n], "wal_bytes": wal[n], "load_ms": load[n]} for n in sizes
        }
        w1.add(
            LABELS[name],
            *(f"{fmt(app[n])} ({fmt_ratio(app[n] / floor)})" for n in sizes),
            fmt_ratio(app[sizes[-1]] / app[sizes[0]]),
        )
        w2.add(LABELS[name], *(f"{wal[n]:,.0f}" for n in sizes))
        w3.add(
            LABELS[name],
            *(f"{fmt(load[n])} ({fmt_ratio(load[n] / selects[n])})" for n in sizes),
            fmt_ratio(load[sizes[-1]] / load[sizes[0]]),
        )
    w1.footnotes.append(
        f"{cfg.append_reps} timed appends per cell after {cfg.warmup} untimed (LangGraph capped "
        "at large N); each system on its own database of one server; the floor is autocommit"
    )
    w7 = Table(
        "WPG W7/W8 PostgresStore listing and recover() (median ms)",
        ["S", "first page of 50", "all pages", "recover()"],
    )
    for s, row in listing.items():
        w7.add(size_label(s), fmt(row["page"]), fmt(row["all"]), fmt(row["recover"]))
    res.tables.extend([w1, w2, w3, w7])
    return res
