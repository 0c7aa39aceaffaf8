"""Blocking file primitives for FileStore. Call them through ``anyio.to_thread``.

Atomic replace follows the POSIX recipe: write a temporary file in the same
directory, fsync it, ``os.replace`` it over the target, fsync the directory.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import orjson

from .._exceptions import CorruptSession

__all__ = [
    "append_durable",
    "atomic_write",
    "fsync_dir",
    "read_bytes",
    "read_session_file",
    "unlink",
]


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may be short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: Path) -> None:
    """fsync a directory so that renames and new names in it are durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, sync_dir: bool = True, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``: temp file, fsync, rename, directory fsync.

    A crash at any instant leaves the old file or the new one, never a torn one.
    With ``sync_dir=False`` the caller fsyncs the directory itself (to batch renames).
    ``mode`` applies to a newly created file (before the umask).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def append_durable(path: Path, data: bytes, *, created: bool) -> None:
    """Append ``data`` to ``path`` and make it durable with one ``fdatasync``.

    :param created: the file is known to exist with a durable directory entry; when
        False the directory is fsynced too, so the new name survives a crash.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        _write_all(fd, data)
        os.fdatasync(fd)
    finally:
        os.close(fd)
    if not created:
        fsync_dir(path.parent)


def truncate_durable(path: Path) -> None:
    """Create ``path`` empty, or empty it, and fsync it (the caller fsyncs the dir)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_bytes(path: Path) -> bytes | None:
    """The file's bytes, or ``None`` if it does not exist."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def unlink(path: Path) -> bool:
    """Remove a file; ``False`` if it was not there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def json_lines(data: bytes) -> list[Any]:
    """Decode JSON lines, ignoring a torn or undecodable tail (see :func:`json_lines_checked`)."""
    return json_lines_checked(data)[0]


def json_lines_checked(data: bytes) -> tuple[list[Any], bool]:
    """Decode JSON lines; returns them and whether the data was whole.

    A crash during an append can leave the last line partial; it was never
    acknowledged (its fsync did not return), so it is dropped. An undecodable line
    in the middle also ends the log: what follows it cannot be trusted in order.
    The flag is ``False`` when something was dropped: a write appended after such a
    tail would be glued to it and lost, so the caller must rewrite the file first.
    """
    out: list[Any] = []
    lines = data.split(b"\n")
    complete = lines[:-1]  # the piece after the last newline is torn or empty
    clean = lines[-1] == b""
    for line in complete:
        if not line:
            continue
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            return out, False
    return out, clean


def read_session_file(path: Path) -> dict[str, Any] | None:
    """Decode a snapshot (or ``.bak``) file; ``None`` if missing.

    :raises CorruptSession: if it is not a JSON object with a ``messages`` list.
    """
    data = read_bytes(path)
    if data is None:
        return None
    try:
        d = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CorruptSession(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(d, dict) or not isinstance(d.get("messages"), list):
        raise CorruptSession(f"{path}: not a session (no 'messages' list)")
    return d
