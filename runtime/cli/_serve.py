"""``runtime serve AGENT``: the HTTP API, the SSE streams and the demo page on uvicorn.

Needs the ``server`` extra. SIGINT/SIGTERM shut down gracefully: open event streams
are closed (clients reconnect with ``Last-Event-ID`` once the server is back), live
turns get ``--shutdown-grace`` seconds to finish, then are suspended for a resume
(``--on-shutdown suspend``, the default with ``--resume auto``) or cancelled with their
partial output kept.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from .._exceptions import Error
from ._common import CLIError, add_store_option, open_store

__all__ = ["register"]


_TOKEN_PARAM = re.compile(r"([?&]token=)[^&\s\"]*")


class _RedactToken(logging.Filter):
    """Hide ``?token=`` values (the SSE route's EventSource credential) in access logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN_PARAM.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args
            )
        return True


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"invalid seconds {text!r}: must be a number >= 0")
    return value


def _positive_seconds(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"invalid seconds {text!r}: must be a number > 0")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: must be an integer 0-65535")
    return int(text)


def _millis(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"invalid milliseconds {text!r}: must be an integer >= 0")
    return int(text)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serve AGENT [--host] [--port] [--store] [--token] [--shutdown-grace] …``.

    The parser sets ``func(args: argparse.Namespace) -> int``: the exit code, 0 after a
    clean shutdown. Failures (bad agent, store locked, port in use) raise
    :class:`CLIError` (one line on stderr, exit status 1).
    """
    p = subparsers.add_parser(
        "serve",
        help="serve the HTTP API, resumable SSE streams and the demo page",
        description="Run AGENT behind the HTTP API (see /openapi.json) with a demo page at "
        "/, on uvicorn. Ctrl+C (SIGINT) or SIGTERM shuts down gracefully.",
    )
    p.add_argument("agent", metavar="AGENT", help="path/to/file.py:function or module:function")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="TCP port (default 8000)")
    add_store_option(p)
    p.add_argument(
        "--token",
        default=None,
        help="API bearer token for /api routes (default $RUNTIME_API_TOKEN, which is safer: "
        "command lines are visible to other users; unset: no auth)",
    )
    p.add_argument(
        "--shutdown-grace",
        type=_seconds,
        default=10.0,
        metavar="S",
        help="seconds live turns get to finish on shutdown before --on-shutdown applies "
        "(default 10)",
    )
    p.add_argument(
        "--on-shutdown",
        choices=["suspend", "cancel"],
        default=None,
        help="a turn still live after --shutdown-grace: 'suspend' saves it whole and "
        "gives its lease up so a restarted or another node resumes it (the default with "
        "--resume auto); 'cancel' ends it as cancelled (the default with --resume manual)",
    )
    p.add_argument(
        "--checkpoint-interval",
        type=_positive_seconds,
        default=1.0,
        metavar="S",
        help="seconds between checkpoint saves of a running turn (default 1)",
    )
    p.add_argument(
        "--lease-ttl",
        type=_positive_seconds,
        default=30.0,
        metavar="S",
        help="seconds a turn's lease on its session lasts unrenewed; after a crash another "
        "process repairs the session once it expired (default 30)",
    )
    p.add_argument(
        "--resume",
        choices=["manual", "auto"],
        default="manual",
        help="a turn whose process stopped: 'auto' resumes it (at start-up, when read, and "
        "once its lease expired on a shared store); 'manual' (default) marks it "
        "interrupted, resumable with POST /api/sessions/{id}/resume",
    )
    p.add_argument(
        "--max-resume-attempts",
        type=int,
        default=3,
        metavar="N",
        help="resumes per turn before it ends with resume_exhausted (default 3)",
    )
    p.add_argument(
        "--event-retention",
        type=_seconds,
        default=300.0,
        metavar="S",
        help="seconds a finished stream's events stay in memory; afterwards they are "
        "replayed from the store (default 300)",
    )
    p.add_argument(
        "--event-log",
        default=None,
        metavar="URL",
        help="redis://host:port/db: a Redis Streams event log shared by every node, so any "
        "node streams, resumes and cancels any turn (needs the redis extra; default: in "
        "memory, this process only)",
    )
    p.add_argument(
        "--event-log-prefix",
        default="runtime",
        metavar="NAME",
        help="first part of every Redis key of --event-log; nodes of one deployment share "
        "it (default runtime)",
    )
    p.add_argument(
        "--heartbeat",
        type=_positive_seconds,
        default=15.0,
        metavar="S",
        help="seconds between SSE heartbeat comments (default 15)",
    )
    p.add_argument(
        "--retry-ms",
        type=_millis,
        default=2000,
        metavar="MS",
        help="reconnection delay hinted to SSE clients, milliseconds (default 2000)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let browser pages from ORIGIN (https://app.example, or *) call the API; "
        "repeat for several (default: none)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=None,
        metavar="NAME",
        help="a Host name the server answers to (repeatable; '*' for any, "
        "'*.example.com' for subdomains). Default: $RUNTIME_ALLOWED_HOSTS, else the "
        "loopback names, plus --host when it names one interface; other hosts get 400, "
        "which stops DNS rebinding",
    )
    p.add_argument(
        "--send-timeout",
        type=_positive_seconds,
        default=30.0,
        metavar="S",
        help="seconds an SSE write may wait for a client that reads nothing before its "
        "response ends with a 'lagged' event (default 30)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn log level (default info)",
    )
    p.set_defaults(func=_serve_command)


def _serve_command(args: argparse.Namespace) -> int:
    """Load the agent, build the app and run uvicorn until shutdown."""
    import uvicorn

    from .. import Runtime
    from ..asgi import create_app
    from ._agents import load_agent

    try:
        agent = load_agent(args.agent)
    except Error as exc:
        raise CLIError(str(exc)) from exc
    try:
        rt = Runtime(
            open_store(args),
            agent,
            lease_ttl=args.lease_ttl,
            shutdown_grace=args.shutdown_grace,
            checkpoint_interval=args.checkpoint_interval,
            event_retention=args.event_retention,
            resume=args.resume,
            max_resume_attempts=args.max_resume_attempts,
            on_shutdown=args.on_shutdown,
            broker=_event_log(args),
        )
        app = create_app(
            rt,
            api_token=args.token,
            heartbeat=args.heartbeat,
            retry_ms=args.retry_ms,
            cors_origins=args.cors_origin,
            allowed_hosts=_allowed_hosts(args),
            send_timeout=args.send_timeout,
        )
    except (Error, ValueError) as exc:
        raise CLIError(str(exc)) from exc

    # Keep the reason the lifespan failed (e.g. StoreLocked) for a one-line message;
    # uvicorn itself only says "Application startup failed".
    startup_errors: list[BaseException] = []
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            try:
                await stack.enter_async_context(inner(app_))
            except Exception as exc:
                startup_errors.append(exc)
                raise
            yield

    app.router.lifespan_context = lifespan
    config = uvicorn.Config(
        app, host=args.host, port=args.port, lifespan="on", log_level=args.log_level
    )
    # After Config(), which configures uvicorn's loggers.
    logging.getLogger("uvicorn.access").addFilter(_RedactToken())
    server = uvicorn.Server(config)
    # uvicorn re-raises the SIGTERM it handled once it has shut down gracefully, so
    # the process would die by it (exit -15); a graceful stop is a success (exit 0).
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run()
    except SystemExit:  # uvicorn's way to report a failed startup
        raise CLIError(_startup_failure(startup_errors, args)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started:
        raise CLIError(_startup_failure(startup_errors, args))
    return 0


def _event_log(args: argparse.Namespace) -> Any:
    """The ``--event-log`` broker, or ``None`` for the in-memory default.

    :raises CLIError: for a URL that is not redis://, or without the redis extra.
    """
    url = args.event_log
    if url is None:
        return None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise CLIError(f"invalid --event-log {url!r}: must be a redis://host:port/db URL")
    try:
        from ..brokers.redis import RedisEventLog
    except ImportError as exc:
        raise CLIError(
            "--event-log redis://… needs the redis extra: pip install 'runtime[redis]'"
        ) from exc
    return RedisEventLog(url, prefix=args.event_log_prefix, retention=args.event_retention)


def _allowed_hosts(args: argparse.Namespace) -> list[str] | None:
    """``--allowed-host`` values; else ``None`` (the app's default: the environment or
    the loopback names) plus the bound name when ``--host`` names one interface."""
    if args.allowed_host:
        return list(args.allowed_host)
    if os.environ.get("RUNTIME_ALLOWED_HOSTS", "").strip():
        return None
    host = args.host.strip().lower()
    loopback = ["localhost", "127.0.0.1", "[::1]"]
    if host in ("", "0.0.0.0", "::", "[::]"):
        return None  # every interface: name the public host with --allowed-host
    if host in loopback or host == "::1":
        return loopback
    return [*loopback, f"[{host}]" if ":" in host else host]


def _startup_failure(errors: list[BaseException], args: argparse.Namespace) -> str:
    if errors:
        return f"{type(errors[0]).__name__}: {errors[0]}"
    return f"could not start the server on {args.host}:{args.port} (see the log above)"
