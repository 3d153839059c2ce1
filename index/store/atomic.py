"""Crash-safe file writes: write a temporary file, fsync it, rename it over the target."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from common.errors import VisearchError

NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class DiskFullError(VisearchError):
    """A write failed for lack of space; what was published before is intact."""


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC and its relatives, as the OS, SQLite and faiss each report them."""
    if isinstance(exc, OSError):
        return exc.errno in NO_SPACE_ERRNOS
    if isinstance(exc, sqlite3.OperationalError):
        return "disk is full" in str(exc) or "disk I/O error" in str(exc)
    return isinstance(exc, RuntimeError) and "No space left on device" in str(exc)


@contextlib.contextmanager
def reporting_disk_full(path: Path) -> Iterator[None]:
    """Turn a full disk under ``path`` into a DiskFullError that says so."""
    try:
        yield
    except (OSError, sqlite3.OperationalError, RuntimeError) as exc:
        if not is_disk_full(exc):
            raise
        raise DiskFullError(f"disk full while writing {path} ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[-1][:160]}); the previous version is "
                            f"intact: free space and run the same command again") from exc


def fsync_dir(path: Path) -> None:
    """Persist a rename: the directory entry is data too."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically.

    The writer writes the temporary path however it likes (faiss, numpy, ...).
    On an exception the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600 would hide it from other users
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process umask (reading it means setting it; done once, under the import lock)."""
    return _UMASK


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_atomic(target: Path, writer: Callable[[Path], Any]) -> None:
    with atomic_path(target) as tmp:
        writer(tmp)


def write_bytes_atomic(target: Path, data: bytes) -> None:
    write_atomic(target, lambda tmp: tmp.write_bytes(data))


def write_json_atomic(target: Path, obj: Any) -> None:
    write_bytes_atomic(target, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
