"""Instruction counts of the FileStore hot paths, for before/after comparisons of a code
change that do not depend on the machine's load (a shared machine's timings do).

``python -m benchmarks.icount [--k 200] [--n 100] TREE [TREE ...]`` runs, for each
source tree (a directory holding a ``runtime/`` package, e.g. a ``git worktree`` or a
``git archive`` of another commit), the W1 path (``k`` checkpoint saves of one ~1 KiB
message on a session of ``n`` messages) and the W3 path (``k`` full loads of it through
a fresh FileStore) under ``valgrind --tool=callgrind``, once with ``k`` operations and
once with none, and prints the instructions per operation (the difference over ``k``):
interpreter start-up, imports and set-up cancel out. Instructions of every thread count
(the store's I/O thread included); the kernel's work (``fdatasync``) does not.
Needs ``valgrind`` on the PATH; a run takes about a minute per tree and path.

``--postgres DSN`` measures PostgresStore instead, on that server (each run in a schema
of its own, dropped at the end): W1 is the leased checkpoint a running turn makes
(``save(skip_index=True, delta=SaveDelta.appended(...), lease=...)`` after a claim, as
WPG times it), W3 a full ``load()``; beside them, once, the two floors WPG uses: a bare
one-row ``INSERT`` (autocommit) and a bare ``SELECT`` of the ``n`` message rows with
``orjson.loads`` of each, on one asyncpg connection. The client's instructions only:
the server's work is another process.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_PROBE = """
import sys, tempfile, anyio
from pathlib import Path
mode, k, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
async def main():
    from runtime.stores.files import FileStore
    try:
        from runtime.stores.abc import SaveDelta
    except ImportError:  # a tree from before the checkpoint delta
        SaveDelta = None
    root = Path(tempfile.mkdtemp())
    msg = {"role": "tool", "tool_call_id": "c", "content": "x" * 1000}
    async with FileStore(root) as store:
        s = store.new_session(title="icount")
        s.messages.extend({"role": "user", "content": "y" * 400} for _ in range(n))
        await store.save(s)
        for _ in range(k if mode == "w1" else 0):
            base = len(s.messages)
            s.messages.append(dict(msg))
            if SaveDelta is None:
                await store.save(s, skip_index=True)
            else:
                await store.save(s, skip_index=True, delta=SaveDelta.appended(base))
    async with FileStore(root) as store:
        for _ in range(k if mode == "w3" else 0):
            await store.load(s.session_id)
anyio.run(main)
"""


_PG_PROBE = """
import sys, uuid, asyncio, asyncpg, orjson
mode, k, n, dsn = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
async def main():
    from runtime.stores.abc import Lease, SaveDelta
    from runtime.stores.postgres import PostgresStore
    schema = "icount_" + uuid.uuid4().hex[:12]
    msg = {"role": "tool", "tool_call_id": "c", "content": "x" * 1000}
    history = [{"role": "user", "content": "y" * 400} for _ in range(n)]
    con = await asyncpg.connect(dsn)
    await con.execute(f"CREATE SCHEMA {schema}")
    await con.execute(f"SET search_path = {schema}")
    store = PostgresStore(dsn, schema=schema, max_size=2)
    await store.open()
    try:
        if mode in ("insert", "select"):
            await con.execute("CREATE TABLE floor (id serial PRIMARY KEY, body text NOT NULL)")
            await con.execute("CREATE TABLE rows (idx integer PRIMARY KEY, body text NOT NULL)")
            await con.copy_records_to_table(
                "rows", records=[(i, orjson.dumps(m).decode()) for i, m in enumerate(history)])
            body = orjson.dumps(msg).decode()
            for _ in range(k if mode == "insert" else 0):
                await con.execute("INSERT INTO floor (body) VALUES ($1)", body)
            for _ in range(k if mode == "select" else 0):
                rows = await con.fetch("SELECT body FROM rows ORDER BY idx")
                [orjson.loads(r[0]) for r in rows]
            return
        s = store.new_session(title="icount")
        s.messages.extend(history)
        await store.save(s)
        lease = Lease("icount", uuid.uuid4().hex, 30.0)
        await store.save(s, lease=lease, lease_mode="claim")
        for _ in range(k if mode == "w1" else 0):
            base = len(s.messages)
            s.messages.append(dict(msg))
            await store.save(s, skip_index=True, delta=SaveDelta.appended(base), lease=lease)
        for _ in range(k if mode == "w3" else 0):
            await store.load(s.session_id)
    finally:
        await store.aclose()
        await con.execute(f"DROP SCHEMA {schema} CASCADE")
        await con.close()
asyncio.run(main())
"""


def _instructions(tree: Path, mode: str, k: int, n: int, dsn: str | None = None) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.py"
        probe.write_text(_PROBE if dsn is None else _PG_PROBE)
        # no .pyc written: a first run that compiled the tree would count the compiler;
        # a fixed hash seed: with a random one the same run's count moved by up to ~3k
        # instructions an operation (dict and set layouts)
        env = {
            **os.environ,
            "PYTHONPATH": str(tree),
            "TMPDIR": tmp,
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
        }
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/cg.out",
                sys.executable,
                str(probe),
                mode,
                str(k),
                str(n),
                *(() if dsn is None else (dsn,)),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", out.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in callgrind's output:\n{out.stderr[-2000:]}")
    return int(found.group(1))


def _per_op(tree: Path, mode: str, k: int, n: int, dsn: str | None) -> float:
    """Instructions per operation: ``k`` operations' run minus an idle run's, over ``k``."""
    return (_instructions(tree, mode, k, n, dsn) - _instructions(tree, mode, 0, n, dsn)) / k


def main(argv: list[str] | None = None) -> int:
    """Print instructions per W1 checkpoint and per W3 load for each tree."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.icount", description=__doc__)
    p.add_argument("trees", nargs="+", type=Path, metavar="TREE")
    p.add_argument("--k", type=int, default=200, help="operations per measured run")
    p.add_argument("--n", type=int, default=100, help="messages in the session")
    p.add_argument(
        "--postgres", metavar="DSN", help="measure PostgresStore on this server (and the floors)"
    )
    args = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("error: valgrind is not installed", file=sys.stderr)
        return 2
    for tree in args.trees:
        if not (tree / "runtime" / "__init__.py").is_file():
            print(f"error: {str(tree)!r} holds no runtime/ package", file=sys.stderr)
            return 2
    floors = {"w1": "insert", "w3": "select"}
    for mode in ("w1", "w3"):
        if args.postgres is not None:
            tree = args.trees[0]
            per_op = _per_op(tree, floors[mode], args.k, args.n, args.postgres)
            print(f"{mode} floor ({floors[mode]}): {per_op:,.0f} instructions per operation")
        for tree in args.trees:
            per_op = _per_op(tree, mode, args.k, args.n, args.postgres)
            print(f"{mode} {tree}: {per_op:,.0f} instructions per operation", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
