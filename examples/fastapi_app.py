"""The runtime's HTTP API and demo page mounted under ``/agent`` in a FastAPI app.

Run it (needs ``pip install 'runtime[server]' fastapi``)::

    python examples/fastapi_app.py            # or: uvicorn examples.fastapi_app:app
    open http://127.0.0.1:8000/agent/         # the demo page
    curl http://127.0.0.1:8000/agent/openapi.json
    open http://127.0.0.1:8000/docs           # FastAPI's docs list the runtime's routes too

Sessions are stored under ``$RUNTIME_HOME`` (default ``./.runtime``). A mounted app's
lifespan does not run, so the host app enters the runtime in its own lifespan; the
mounted app sees ``runtime.running`` and leaves it alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI

from runtime import FileStore, Runtime, Turn
from runtime.asgi import create_app, mount


async def agent(turn: Turn) -> None:
    """Echo the user's words one token at a time, then count them with a "tool"."""
    words = turn.user_message.split()
    await turn.reasoning(f"echo {len(words)} words, then count them")
    for word in words:
        await turn.token(word + " ")
        await anyio.sleep(0.05)
    async with turn.tool("word_count", {"text": turn.user_message}) as call:
        call.result = {"words": len(words)}
    await turn.reply(f"That was {len(words)} words.")


runtime = Runtime(FileStore(), agent, shutdown_grace=5.0)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with runtime:  # opens the store, runs recovery; on exit drains live turns
        yield


app = FastAPI(title="my service", lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, Any]:
    """The host app's own route, beside the mounted runtime."""
    return {"ok": True, "runtime": runtime.statistics()}


# Like app.mount("/agent", ...), and the runtime's routes also appear in /docs.
mount(app, "/agent", create_app(runtime))


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=8000)
