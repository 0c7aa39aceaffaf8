"""Blocking file primitives for FileStore. Call them off the event loop (FileStore's
I/O thread or ``anyio.to_thread``).

Atomic replace follows the POSIX recipe: write a temporary file in the same
directory, fsync it, ``os.replace`` it over the target, fsync the directory.

Files are created ``0600`` and directories ``0700``: sessions hold conversations
and, in their metadata, whatever a host put there.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import orjson

from .._exceptions import CorruptSession

logger = logging.getLogger("runtime.stores.files")

#: Mode of every file the store creates (before the umask).
FILE_MODE = 0o600
#: Mode of every directory the store creates.
DIR_MODE = 0o700
#: Folder (inside the sessions directory) where damaged files are moved or copied.
QUARANTINE = "_quarantine"

__all__ = [
    "DIR_MODE",
    "FILE_MODE",
    "QUARANTINE",
    "AppendFds",
    "JsonLines",
    "ReadFds",
    "SessionFds",
    "append_durable",
    "close_session_fds",
    "atomic_write",
    "decode_session",
    "field_error",
    "fsync_dir",
    "json_lines_checked",
    "open_read",
    "quarantine",
    "read_bytes",
    "read_keeping_fd",
    "read_session_nowait",
    "read_session_file",
    "unlink",
    "write_durable",
]


def _named(exc: OSError, path: Path | str) -> OSError:
    """``exc`` with ``path`` as its file name when it has none (a failed ``write`` or
    ``fsync`` on a descriptor names no file), so the error says where the disk failed."""
    if exc.filename is not None:
        return exc
    named = OSError(exc.errno, exc.strerror or str(exc), str(path))
    named.__cause__ = exc
    return named


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written (a write may be short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


#: ``pwritev2``'s ``RWF_DSYNC`` where this Python and OS have it (Linux 4.7+), else 0;
#: set to 0 for the process when the kernel or file system refuses the flag
_RWF_DSYNC: int = getattr(os, "RWF_DSYNC", 0) if hasattr(os, "pwritev") else 0


def write_durable(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` at ``fd`` (an ``O_APPEND`` descriptor: at the file's
    end) and make it durable, as ``write`` + ``fdatasync`` do, in one system call where
    the kernel allows: ``pwritev2(fd, data, -1, RWF_DSYNC)``.

    ``RWF_DSYNC`` is the per-write form of ``O_DSYNC`` (pwritev2(2)): the call returns
    once the bytes written and the metadata needed to read them back (the file's new
    size) are on stable storage, i.e. synchronized I/O data integrity completion, what
    ``fdatasync`` gives (on Linux both end in ``vfs_fsync_range(..., datasync=1)``, the
    flag's over the range just written; every earlier byte of the file was made durable
    by the append that wrote it). Where the flag is missing (not Linux, an old kernel)
    or refused (``EOPNOTSUPP``/``EINVAL``/``ENOSYS``, before anything is written) this
    falls back to ``write`` + ``fdatasync`` for the rest of the process. Saves one
    system call and, in a Python thread, one more release and re-take of the GIL.

    :raises OSError: if a write or the sync fails; part of ``data`` may be in the file.
    """
    global _RWF_DSYNC
    flag = _RWF_DSYNC
    if flag:
        view = memoryview(data)
        try:
            n = os.pwritev(fd, (view,), -1, flag)
        except (NotImplementedError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno not in _REFUSED:
                raise
            _RWF_DSYNC = 0  # nothing was written: the flags are checked first
        else:
            while n < len(view):  # a short write: the part written is durable already
                view = view[n:]
                n = os.pwritev(fd, (view,), -1, flag)
            return
    _write_all(fd, data)
    os.fdatasync(fd)


_REFUSED = (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS)


def fsync_dir(directory: Path) -> None:
    """fsync a directory so that renames and new names in it are durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        raise _named(exc, directory) from None
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, sync_dir: bool = True, mode: int = FILE_MODE) -> None:
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
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _named(exc, tmp) from None
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
    """Append ``data`` to ``path`` and make it durable (:func:`write_durable`).

    :param created: the file is known to exist with a durable directory entry; when
        False the directory is fsynced too, so the new name survives a crash.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        write_durable(fd, data)
    except OSError as exc:
        raise _named(exc, path) from None
    finally:
        os.close(fd)
    if not created:
        fsync_dir(path.parent)


V = TypeVar("V")


class _KeptFds(Generic[V]):
    """Open descriptors kept by key (a session id), at most ``size`` keys (least recently
    used closed first). A caller :meth:`take` s a key's descriptors out while it uses
    them, so eviction or :meth:`discard` from another thread never closes one in use,
    and :meth:`keep` s them again afterwards. Thread-safe."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._fds: dict[str, V] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _close(self, value: V) -> None:
        raise NotImplementedError

    def take(self, key: str) -> V | None:
        """The descriptors kept for ``key``, now the caller's (keep or close them)."""
        with self._lock:
            return self._fds.pop(key, None)

    def keep(self, key: str, value: V) -> None:
        """Keep ``value`` for ``key`` (closing what it replaces, and the least recently
        used beyond ``size``); closes it at once after :meth:`close`."""
        evicted: list[V] = []
        with self._lock:
            if self._closed:
                evicted.append(value)
            else:
                old = self._fds.pop(key, None)
                if old is not None:
                    evicted.append(old)
                self._fds[key] = value  # last in iteration order: the most recently used
                while len(self._fds) > self.size:
                    evicted.append(self._fds.pop(next(iter(self._fds))))
        for old in evicted:
            self._close(old)

    def discard(self, key: str) -> None:
        """Close the descriptors kept for ``key``, if any."""
        value = self.take(key)
        if value is not None:
            self._close(value)

    def clear(self) -> None:
        """Close every kept descriptor; one in use is kept again when its use ends."""
        with self._lock:
            values, self._fds = list(self._fds.values()), {}
        for value in values:
            self._close(value)

    def close(self) -> None:
        """Close every kept descriptor and keep none from now on (one in use is closed
        when its user hands it back)."""
        with self._lock:
            self._closed = True
        self.clear()

    def __len__(self) -> int:
        return len(self._fds)


class AppendFds(_KeptFds[int]):
    """Open ``O_APPEND`` descriptors kept between durable appends, by key (a session id).

    Saves the ``open`` and ``close`` of every checkpoint. At most ``size`` stay open
    (least recently used closed first). A descriptor is taken out of the cache while
    an append uses it, so eviction or :meth:`discard` from another thread never closes
    one in use. Callers must :meth:`discard` a key before its file is unlinked or
    replaced, so that no later append goes to the old inode. Thread-safe.

    :param size: descriptors kept open at most.
    """

    def _close(self, value: int) -> None:
        os.close(value)

    def append_durable(self, key: str, path: Path | str, data: bytes) -> None:
        """Append ``data`` to ``path`` (created if missing; the caller knows its
        directory entry is durable) and make it durable (:func:`write_durable`).

        :raises OSError: if a write or the sync fails; the descriptor is closed then,
            and part of ``data`` may have reached the file.
        """
        fd = self.take(key)
        if fd is None:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            write_durable(fd, data)
        except OSError as exc:
            os.close(fd)
            raise _named(exc, path) from None
        except BaseException:
            os.close(fd)
            raise
        self.keep(key, fd)


class SessionFds(NamedTuple):
    """Read-only descriptors of one session's files, as :class:`ReadFds` keeps them."""

    gen: int  # the generation of the snapshot ``snapshot`` reads
    snapshot: int
    journal: int | None  # None: not opened (the journal was empty or missing)


def close_session_fds(fds: SessionFds) -> None:
    """Close the descriptors of ``fds``."""
    os.close(fds.snapshot)
    if fds.journal is not None:
        os.close(fds.journal)


class ReadFds(_KeptFds[SessionFds]):
    """Read-only descriptors of sessions' snapshots and journals kept between loads, by
    session id, so that a load can read them from the page cache in the calling thread
    (:func:`read_session_nowait`) with no ``open`` (a path lookup may wait for the disk).
    A snapshot is replaced by a rename, so a kept descriptor may read an older
    generation: :attr:`SessionFds.gen` says which. Callers :meth:`discard` a key when
    its files are replaced or unlinked, so that no old inode stays pinned. Thread-safe.

    :param size: sessions whose descriptors are kept at most.
    """

    def _close(self, value: SessionFds) -> None:
        close_session_fds(value)


#: ``os.RWF_NOWAIT`` where ``preadv2`` takes it (Linux 4.14+), else ``None``
_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


def read_session_nowait(
    snapshot: int,
    snapshot_size: int,
    journal: int | None,
    journal_size: int,
    journal_lines: int,
    into: bytearray,
) -> list[Any] | None:
    """A snapshot and the journal lines after it, decoded by one ``orjson.loads`` as
    ``[snapshot, record, ...]``, when the page cache holds every byte; else ``None``.

    :param snapshot: an open snapshot file, holding exactly ``snapshot_size`` bytes.
    :param journal: an open journal whose first ``journal_size`` bytes are
        ``journal_lines`` complete lines (``None`` if ``journal_size`` is 0).
    :param into: a buffer the caller reuses between reads; one of
        ``snapshot_size + journal_size + 3`` bytes at least, else a new one is made
        (``bytearray(n)`` zero-fills, which a reused buffer spares).

    Both files are read into one buffer with ``preadv2(2)`` and ``RWF_NOWAIT``: the
    kernel returns at once (``EAGAIN``, or a short read) when data would have to come
    from the storage device or a lock is held, so this never waits on the disk and may
    run on the event loop's thread. Between ``[`` and ``]``, a comma is written after
    the snapshot and in place of each line's newline: the one JSON array the bytes then
    hold is decoded in one call, with no copy of the bytes (orjson never writes a raw
    newline inside a value). ``None`` as well where the flag is missing (not Linux) or
    refused (``EOPNOTSUPP``), when the snapshot does not hold exactly
    ``snapshot_size`` bytes or the journal fewer than ``journal_size``, and when the
    bytes do not decode to ``1 + journal_lines`` values (a damaged or changed file: the
    caller reads it again the slow way, which says what is wrong).
    """
    if _RWF_NOWAIT is None or (journal_size and journal is None):
        return None
    start = snapshot_size + 2  # the journal's first byte, after "[" and the comma
    end = start + journal_size if journal_size else start
    buf = into if len(into) > end else bytearray(end + 1)
    view = memoryview(buf)
    try:
        # one byte more than the snapshot should hold tells a longer file apart
        if _preadv_nowait(snapshot, view[1 : snapshot_size + 2]) != snapshot_size:
            return None
        buf[0] = 0x5B  # [
        if not journal_size:
            buf[start - 1] = 0x5D  # ]
            return _array(view[:start], 1)
        assert journal is not None
        if _preadv_nowait(journal, view[start:end]) != journal_size:
            return None
        buf[start - 1] = 0x2C  # ,
        at = start
        for _ in range(journal_lines):  # each newline becomes a comma, the last "]"
            at = buf.find(b"\n", at, end)
            if at < 0:
                return None
            buf[at] = 0x2C
            at += 1
        if at != end:  # the last line does not end at journal_size: not as written
            return None
        buf[end - 1] = 0x5D
        return _array(view[:end], 1 + journal_lines)
    finally:
        view.release()


def _preadv_nowait(fd: int, view: memoryview) -> int:
    """Bytes read into ``view`` from offset 0 of ``fd`` by ``preadv2(RWF_NOWAIT)``; -1
    when the call fails (``EAGAIN``: not all in the page cache; ``EOPNOTSUPP``)."""
    assert _RWF_NOWAIT is not None
    try:
        return os.preadv(fd, (view,), 0, _RWF_NOWAIT)
    except OSError:
        return -1


def _array(data: memoryview, count: int) -> list[Any] | None:
    try:
        out = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    finally:
        data.release()
    return out if type(out) is list and len(out) == count else None


def truncate_durable(path: Path) -> None:
    """Create ``path`` empty, or empty it, and fsync it (the caller fsyncs the dir)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fsync(fd)
    except OSError as exc:
        raise _named(exc, path) from None
    finally:
        os.close(fd)


def open_read(path: Path | str) -> int | None:
    """A read-only descriptor of ``path`` (the caller closes it), or ``None`` if the
    file does not exist."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def read_bytes(path: Path | str) -> bytes | None:
    """The file's bytes, or ``None`` if it does not exist.

    One ``open``, ``fstat``, ``read`` and ``close``, without the buffered file object
    ``open()`` builds: a read that returns exactly the size ``fstat`` gave is the whole
    file as it was then, so no further read looks for its end (one does when the read
    was short or the file grew meanwhile).
    """
    opened = read_keeping_fd(path)
    if opened is None:
        return None
    os.close(opened[1])
    return opened[0]


def read_keeping_fd(path: Path | str) -> tuple[bytes, int] | None:
    """:func:`read_bytes`, but the read-only descriptor stays open: ``(bytes, fd)``,
    the caller closes ``fd``; ``None`` if the file does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return _read_all(fd), fd
    except OSError as exc:
        os.close(fd)
        raise _named(exc, path) from None
    except BaseException:
        os.close(fd)
        raise


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    data = os.read(fd, size + 1)  # one byte more than fstat saw: tells growth apart
    if len(data) == size:
        return data
    chunks = [data]  # a short read, or the file grew: read to its end
    more = data
    while more:
        more = os.read(fd, 1 << 20)
        chunks.append(more)
    return b"".join(chunks)


def unlink(path: Path) -> bool:
    """Remove a file; ``False`` if it was not there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def json_lines(data: bytes) -> list[Any]:
    """Decode JSON lines, ignoring a torn or undecodable tail (see :func:`json_lines_checked`)."""
    return json_lines_checked(data).records


class JsonLines(NamedTuple):
    """Decoded JSON lines: the ``records`` kept; ``clean``, whether nothing was
    dropped; ``damaged_line``, the 1-based number of an undecodable *complete* line
    (``None`` when at most a torn tail was dropped); ``dropped``, how many complete
    lines were dropped (that one and every line after it)."""

    records: list[Any]
    clean: bool
    damaged_line: int | None = None
    dropped: int = 0


def json_lines_checked(data: bytes | bytearray) -> JsonLines:
    """Decode JSON lines.

    A crash during an append can leave the last line partial; it was never
    acknowledged (its fsync did not return), so it is dropped. An undecodable line
    in the middle also ends the log: what follows it cannot be trusted in order; the
    result says where (the caller logs it and keeps a copy). ``clean`` is ``False``
    when something was dropped: a write appended after such a tail would be glued to
    it and lost, so the caller must rewrite the file first.
    """
    end = data.rfind(b"\n")
    if end > 0:
        # fast path: the complete lines as one JSON array, one parse instead of one per
        # line (orjson never writes a raw newline inside a value). An empty or damaged
        # line fails the parse, or the count when it holds several comma-separated values
        # or a value spans lines, and the slow path below decides what is kept
        # (two copies of the bytes: the replace and the join, which takes a view)
        array = b"".join((b"[", memoryview(data.replace(b"\n", b","))[:end], b"]"))
        try:
            out = orjson.loads(array)
        except orjson.JSONDecodeError:
            pass
        else:
            if len(out) == data.count(b"\n", 0, end) + 1:
                return JsonLines(out, end == len(data) - 1)
    out = []
    parts = bytes(data).split(b"\n")  # (a copy only of a bytearray, on this rare path)
    complete = parts[:-1]  # the piece after the last newline is torn or empty
    clean = parts[-1] == b""
    for number, line in enumerate(complete, 1):
        if not line:
            continue
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            dropped = sum(1 for rest in complete[number - 1 :] if rest)
            return JsonLines(out, False, number, dropped)
    return JsonLines(out, clean)


def quarantine(path: Path, reason: str, *, copy: bool = False) -> Path | None:
    """Move a damaged file aside into ``_quarantine/`` beside it (a name that is
    never a session), or copy it there with ``copy=True``, and log why. Returns the
    new path, or ``None`` if the file was already gone.

    :raises OSError: if the folder cannot be made or the file moved.
    """
    folder = path.parent / QUARANTINE
    folder.mkdir(mode=DIR_MODE, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = folder / f"{path.name}.{stamp}.{uuid.uuid4().hex[:8]}"
    try:
        if copy:
            data = read_bytes(path)
            if data is None:
                return None
            atomic_write(target, data)
        else:
            os.replace(path, target)
            fsync_dir(path.parent)
    except FileNotFoundError:
        return None
    logger.error("quarantined %s as %s: %s", path, target, reason)
    return target


def read_session_file(path: Path | str) -> dict[str, Any] | None:
    """Decode a snapshot (or ``.bak``) file; ``None`` if missing.

    :raises CorruptSession: if it is not a JSON object with a ``messages`` list.
    """
    data = read_bytes(path)
    return None if data is None else decode_session(path, data)


_NUMBER_FIELDS = ("created_at", "updated_at", "pending_started_at")
_TEXT_FIELDS = ("session_id", "title", "active_stream_id", "pending_user_message")


def field_error(d: dict[str, Any], *, messages: bool = True) -> str | None:
    """What is wrong with the types of a decoded session's fields, or ``None``.

    :param messages: also check that ``messages`` is a list of objects (False: the
        caller checked the messages it changed itself).
    """
    if messages:
        problem = _messages_error(d.get("messages"))
        if problem is not None:
            return problem
    for key in _NUMBER_FIELDS:
        value = d.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"field {key!r} is {value!r}, not a number"
    for key in _TEXT_FIELDS:
        value = d.get(key)
        if value is not None and not isinstance(value, str):
            return f"field {key!r} is {value!r}, not a string"
    gen = d.get("gen", 0)
    if isinstance(gen, bool) or not isinstance(gen, int) or gen < 0:
        return f"field 'gen' is {gen!r}, not an integer >= 0"
    metadata = d.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return f"field 'metadata' is {metadata!r}, not an object"
    return None


def _messages_error(messages: object) -> str | None:
    if not isinstance(messages, list):
        return "no 'messages' list"
    if set(map(type, messages)) - {dict}:  # one pass in C; the loop below finds which
        for i, m in enumerate(messages):
            if not isinstance(m, dict):
                return f"message {i} is a JSON {type(m).__name__}, not an object"
    return None


def decode_session(path: Path | str, data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Decode the bytes of a snapshot (or ``.bak``) file read from ``path``.

    :raises CorruptSession: naming ``path`` and the rule, if it is not a JSON object
        with a ``messages`` list of objects and fields of the right types (numbers for
        times, strings for ids and text, a non-negative integer ``gen``).
    """
    try:
        d = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CorruptSession(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(d, dict):
        raise CorruptSession(f"{path}: not a session (a JSON {type(d).__name__}, not an object)")
    problem = field_error(d)
    if problem is not None:
        raise CorruptSession(f"{path}: not a session ({problem})")
    return d
