"""File names and types as the operating system gives them, shown safely to people.

A Linux file name is any bytes but NUL and '/'. Python turns a name that is not
valid UTF-8 into a str with surrogate escapes (``b'caf\\xe9.jpg'`` becomes
``'caf\\udce9.jpg'``): that str opens the same file and round-trips to the same
bytes, so the program keeps it as is, but it cannot be encoded as UTF-8, which
SQLite, protobuf, JSON readers and terminals need. Paths are converted at those
edges only: losslessly where they are stored, readably where they are shown.

A name ending in ``.jpg`` may also be a FIFO (reading it blocks forever) or a
link to a device such as /dev/zero (reading it never ends): only regular files
are read.
"""

from __future__ import annotations

import os
import stat

FILE_TYPES = [
    (stat.S_ISDIR, "directory"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
]


def path_bytes(path: str) -> bytes:
    """The name's bytes on disk (the inverse of how Python decoded it)."""
    return os.fsencode(path)


def is_utf8(path: str) -> bool:
    """True when the name can be stored and shown as text unchanged."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display_path(path: str) -> str:
    """A readable, always-encodable form: bytes that are not UTF-8 appear as ``\\xe9``.

    Never raises; valid names come back unchanged. Meant for people (failure
    lines, logs, gRPC replies), not for opening the file again.
    """
    if is_utf8(path):
        return path
    try:
        raw = os.fsencode(path)
    except UnicodeEncodeError:  # a surrogate that no file name decodes to
        return path.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def not_regular(mode: int) -> str | None:
    """Why a file of this ``st_mode`` must not be read, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in FILE_TYPES if test(mode)), "special file")
    return f"not a regular file ({kind})"
