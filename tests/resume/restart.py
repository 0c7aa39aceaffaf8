"""A restarted process: ``python tests/resume/restart.py STORE FILE.py:FUNC SESSION [N]``.

Opens the FileStore at STORE with ``Runtime(resume="auto", max_resume_attempts=N)``
(default 3), lets it resume the session's interrupted turn by itself, waits until the
session has neither a live stream nor an interrupted turn, and prints the session as JSON.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import anyio

from runtime import FileStore, Runtime


def _load(ref: str) -> Any:
    path, _, name = ref.rpartition(":")
    spec = importlib.util.spec_from_file_location(Path(path).stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


async def turn_over(rt: Runtime, session_id: str) -> None:
    """Until the session has neither a live stream nor an interrupted turn (the runtime,
    with ``resume="auto"``, resumes an interrupted one by itself)."""
    while True:
        status = await rt.session_status(session_id)
        if status["active_stream_id"] is None and status["interrupted"] is None:
            return
        if status["active_stream_id"] is not None:
            await rt.wait_stream(status["active_stream_id"])
        await anyio.sleep(0.05)


async def main(store: str, agent_ref: str, session_id: str, attempts: int) -> None:
    agent = _load(agent_ref)
    async with Runtime(
        FileStore(store),
        agent,
        resume="auto",
        resume_backoff=0.05,
        max_resume_attempts=attempts,
        checkpoint_interval=0.2,
    ) as rt:
        await turn_over(rt, session_id)
        session = await rt.get_session(session_id)
        print(json.dumps(session.to_dict()))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    attempts = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3], attempts)
