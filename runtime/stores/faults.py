"""Fault injection for :class:`~runtime.stores.FileStore`: kill the process or fail a
call at a named file I/O step. For crash-torture and fault-injection tests only.

Every blocking file call of FileStore goes through the ``os`` name of
``runtime.stores._fileio``. :func:`install` replaces that name with a proxy that
counts the calls of each named step and acts at the chosen one; :func:`uninstall`
puts the real ``os`` module back. When no plan is installed the store calls ``os``
directly: the hook costs nothing when it is off.

Steps (:data:`STEPS`), each a kind of call of the store's I/O module:

==================  ===============================================================
``journal_append``  ``write`` of a checkpoint line to ``<id>.journal``
``fdatasync``       ``fdatasync`` after an append (journal, ledger, index, tombstones);
                    an append made durable in one ``pwritev2(RWF_DSYNC)`` counts as its
                    ``write`` step, then this one
``snapshot_write``  ``write`` of the temporary file of a new ``<id>.json``
``backup_write``    ``write`` of the temporary file of ``<id>.json.bak``
``events_file``     ``write`` of the temporary file of ``<id>.events.jsonl``
``ledger_append``   ``write`` of a tool ledger line to ``<id>.ledger.jsonl`` (or of its
                    temporary file, when a torn tail or pruning rewrites it)
``index``           ``write`` to ``_index.jsonl`` (an append or its rewrite)
``tombstone``       ``write`` to ``_deleted.jsonl``
``fsync``           ``fsync`` of a file (a temporary file, the emptied journal)
``rename``          ``os.replace`` of a temporary file over its target
``dir_fsync``       ``fsync`` of the sessions directory
``truncate``        the ``open(O_TRUNC)`` that empties a journal
``unlink``          ``unlink`` of a superseded or deleted file
``read``            the ``open`` of a file for reading (snapshot, journal, ``.bak``, …)
==================  ===============================================================

Actions: ``kill`` (SIGKILL this process before the call), ``kill-torn`` (for a
``write`` step: write the first half of the bytes, then SIGKILL, as a crash in the
middle of a write leaves them; other steps behave as ``kill``), ``kill-after`` (SIGKILL
right after the call returned), or an errno name (``ENOSPC``, ``EIO``, ``EACCES``,
``ENOTDIR``, …): the call raises that :class:`OSError` with the path, as the kernel
would.

A crash-torture child sets the environment variable :data:`ENV_VAR` to
``ACTION:STEP[:N]`` (act at the N-th call of STEP, default 1, counted from the
store's :meth:`~runtime.stores.FileStore.open`); FileStore reads it once when it
opens. Tests in one process use :func:`inject` instead.

The plan is process-wide (every FileStore of the process shares the I/O module).
"""

from __future__ import annotations

import errno
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from . import _fileio

__all__ = [
    "ENV_VAR",
    "STEPS",
    "FaultPlan",
    "inject",
    "install",
    "install_from_env",
    "installed",
    "uninstall",
]

#: The environment variable a FileStore reads once at open: ``ACTION:STEP[:N]``.
ENV_VAR = "RUNTIME_FILESTORE_FAULT"

#: Every step a plan can name, in the order a checkpoint or full save meets them.
STEPS = (
    "journal_append",
    "fdatasync",
    "snapshot_write",
    "backup_write",
    "events_file",
    "ledger_append",
    "index",
    "tombstone",
    "fsync",
    "rename",
    "dir_fsync",
    "truncate",
    "unlink",
    "read",
)

_KILLS = ("kill", "kill-torn", "kill-after")


@dataclass
class FaultPlan:
    """Act at the ``nth`` call of ``step`` and, for an errno action, at the next
    ``times - 1`` matching calls too (``times=None``: every later call).

    :param action: ``kill``, ``kill-torn``, ``kill-after`` or an errno name.
    :param step: one of :data:`STEPS`.
    :param nth: the first matching call that fails (1 = the first), counted from
        :func:`install`.
    :param times: how many matching calls fail (an errno action), ``None`` for all.
    :param path_contains: only calls on a path containing this string match (e.g. a
        session id), so other sessions keep working.
    :raises ValueError: for an unknown action or step, or ``nth < 1``.
    """

    action: str
    step: str
    nth: int = 1
    times: int | None = 1
    path_contains: str | None = None
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.step not in STEPS:
            raise ValueError(f"invalid fault step {self.step!r}: must be one of {STEPS}")
        if self.action not in _KILLS and not isinstance(getattr(errno, self.action, None), int):
            raise ValueError(
                f"invalid fault action {self.action!r}: must be one of {_KILLS} "
                "or an errno name such as ENOSPC"
            )
        if isinstance(self.nth, bool) or not isinstance(self.nth, int) or self.nth < 1:
            raise ValueError(f"invalid fault nth {self.nth!r}: must be an integer >= 1")

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """``ACTION:STEP[:N]`` as in :data:`ENV_VAR`.

        :raises ValueError: naming ``spec`` if it is malformed.
        """
        parts = spec.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and not parts[2].isdigit()):
            raise ValueError(f"invalid {ENV_VAR} {spec!r}: must be ACTION:STEP[:N]")
        return cls(parts[0], parts[1], int(parts[2]) if len(parts) == 3 else 1)

    @property
    def is_kill(self) -> bool:
        """True for the SIGKILL actions."""
        return self.action in _KILLS

    def _due(self, step: str, path: str) -> bool:
        if step != self.step or (self.path_contains and self.path_contains not in path):
            return False
        self.seen += 1
        if self.seen < self.nth:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        self.fired += 1
        return True


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _classify_write(path: str) -> str:
    name = os.path.basename(path)
    if name.startswith(".") and name.endswith(".tmp"):  # .<target>.<pid>.tmp
        name = name[1:].rsplit(".", 2)[0]
    if name == "_index.jsonl":
        return "index"
    if name == "_deleted.jsonl":
        return "tombstone"
    if name.endswith(".journal"):
        return "journal_append"
    if name.endswith(".json.bak"):
        return "backup_write"
    if name.endswith(".events.jsonl"):
        return "events_file"
    if name.endswith(".ledger.jsonl"):
        return "ledger_append"
    return "snapshot_write"


class _FaultyOS:
    """Stands in for ``os`` inside the I/O module; passes everything through except
    the calls that make up the named steps."""

    def __init__(self, plan: FaultPlan) -> None:
        self._plan = plan
        self._lock = threading.Lock()
        self._paths: dict[int, tuple[str, bool]] = {}  # fd -> (path, is a directory)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def _check(self, step: str, path: str) -> bool:
        """Count the call; raise for an errno action; True if a kill is due."""
        plan = self._plan
        with self._lock:
            due = plan._due(step, path)
        if not due:
            return False
        if plan.is_kill:
            if plan.action == "kill":
                _kill()
            return True
        code = getattr(errno, plan.action)
        raise OSError(code, os.strerror(code), path)

    def _after(self, due: bool) -> None:
        if due:
            _kill()

    def open(self, path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        p = os.fspath(path)
        p = p if isinstance(p, str) else p.decode()
        directory = bool(flags & os.O_DIRECTORY)
        step = None
        if flags & os.O_TRUNC and not p.endswith(".tmp"):
            step = "truncate"
        elif not directory and not flags & (os.O_WRONLY | os.O_RDWR):
            step = "read"
        due = self._check(step, p) if step else False
        fd = os.open(path, flags, mode, **kw)
        self._after(due)
        with self._lock:
            self._paths[fd] = (p, directory)
        return fd

    def close(self, fd: int) -> None:
        with self._lock:
            self._paths.pop(fd, None)
        os.close(fd)

    def _path(self, fd: int) -> tuple[str, bool]:
        with self._lock:
            known = self._paths.get(fd)
        if known is not None:
            return known
        try:  # opened before the plan was installed (a kept journal descriptor)
            return os.readlink(f"/proc/self/fd/{fd}"), False
        except OSError:
            return "", False

    def write(self, fd: int, data: Any) -> int:
        path = self._path(fd)[0]
        due = self._check(_classify_write(path), path)
        if due and self._plan.action == "kill-torn":
            view = memoryview(data)
            os.write(fd, view[: max(1, len(view) // 2)])
            _kill()
        n = os.write(fd, data)
        self._after(due)
        return n

    def pwritev(self, fd: int, buffers: Any, offset: int, flags: int = 0) -> int:
        # a durable append in one call (RWF_DSYNC) is both steps, as write + fdatasync
        # would be: the write's (a torn write, a failed one), then the sync's
        if offset != -1 or flags & ~getattr(os, "RWF_DSYNC", 0):
            return os.pwritev(fd, buffers, offset, flags)
        n = self.write(fd, b"".join(buffers))
        if flags:
            self.fdatasync(fd)
        return n

    def fdatasync(self, fd: int) -> None:
        path = self._path(fd)[0]
        due = self._check("fdatasync", path)
        os.fdatasync(fd)
        self._after(due)

    def fsync(self, fd: int) -> None:
        path, directory = self._path(fd)
        due = self._check("dir_fsync" if directory else "fsync", path)
        os.fsync(fd)
        self._after(due)

    def replace(self, src: Any, dst: Any, **kw: Any) -> None:
        due = self._check("rename", str(os.fspath(dst)))
        os.replace(src, dst, **kw)
        self._after(due)

    def unlink(self, path: Any, **kw: Any) -> None:
        due = self._check("unlink", str(os.fspath(path)))
        os.unlink(path, **kw)
        self._after(due)


def install(plan: FaultPlan) -> None:
    """Route FileStore's file calls through ``plan`` (process-wide) until
    :func:`uninstall`. Counting starts now."""
    setattr(_fileio, "os", _FaultyOS(plan))  # noqa: B010 - replaced on purpose


def uninstall() -> None:
    """Give FileStore's I/O module the real ``os`` back (idempotent)."""
    setattr(_fileio, "os", os)  # noqa: B010


def installed() -> bool:
    """True while a plan is installed."""
    return not isinstance(getattr(_fileio, "os"), ModuleType)  # noqa: B009


def install_from_env() -> FaultPlan | None:
    """Install the plan named by :data:`ENV_VAR`, if set; FileStore calls this once
    in :meth:`~runtime.stores.FileStore.open`.

    :raises ValueError: if the variable is set but malformed.
    """
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return None
    plan = FaultPlan.parse(spec)
    install(plan)
    return plan


@contextmanager
def inject(
    action: str,
    step: str,
    *,
    nth: int = 1,
    times: int | None = 1,
    path_contains: str | None = None,
) -> Iterator[FaultPlan]:
    """``with inject("ENOSPC", "fdatasync", path_contains=sid) as plan:`` — install a
    :class:`FaultPlan` for the block, then restore the real ``os``. ``plan.fired``
    tells how many calls failed."""
    plan = FaultPlan(action, step, nth, times, path_contains)
    install(plan)
    try:
        yield plan
    finally:
        uninstall()
