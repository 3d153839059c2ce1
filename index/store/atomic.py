"""Crash-safe file writes: write a temporary file, fsync it, rename it over the target."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


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
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(target: Path, writer: Callable[[Path], Any]) -> None:
    with atomic_path(target) as tmp:
        writer(tmp)


def write_bytes_atomic(target: Path, data: bytes) -> None:
    write_atomic(target, lambda tmp: tmp.write_bytes(data))


def write_json_atomic(target: Path, obj: Any) -> None:
    write_bytes_atomic(target, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())
