"""What the catalog stores: its SQL schema, the records of a file and of a shard, and the
lossless encoding of file names that are not UTF-8."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common.errors import VisearchError
from common.paths import path_bytes

SCHEMA_VERSION = 2  # the newest schema this program reads and writes
# 1: every path is TEXT. 2: a path that is not valid UTF-8 is stored as a BLOB of its bytes
# (see _to_db). A catalog moves to 2 only when it first stores such a path, so indexes
# without one stay readable by programs that know schema 1 only.
RAW_PATHS_VERSION = 2
# Rows per IN (...) look-up: SQLite limits the variables of one statement.
LOOKUP_CHUNK = 500

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    deleted_run INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS images_live_path ON images(path) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS images_sha256 ON images(sha256);
CREATE TABLE IF NOT EXISTS shards (
    shard INTEGER PRIMARY KEY,
    file TEXT NOT NULL,
    first_id INTEGER NOT NULL,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS metadata (
    id INTEGER NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (id, key)
);
CREATE TABLE IF NOT EXISTS failures (
    path TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    run_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,
    embedded INTEGER NOT NULL DEFAULT 0,
    reused INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0
);
"""


class CatalogError(VisearchError):
    """The catalog is missing, newer than this program, or inconsistent."""


def damaged(path: Path, exc: Exception) -> CatalogError:
    """The message for a catalog SQLite cannot read (overwritten or truncated pages)."""
    return CatalogError(f"the catalog {path} is damaged ({exc}): the stored vectors can no "
                        f"longer be mapped to images; build again from the images into a new "
                        f"directory (`visearch check {path.parent}` lists what else is hurt)")


@dataclass(frozen=True)
class ImageRecord:
    """One image file through its life: listed (path, size, mtime), read (sha256 of its
    bytes) and stored (its vector id). Fields not known yet keep their defaults."""

    path: str
    size: int
    mtime_ns: int
    sha256: str = ""
    id: int = -1


@dataclass(frozen=True)
class Shard:
    shard: int
    file: str
    first_id: int
    count: int


def _to_db(path: str) -> str | bytes:
    """A path as stored: TEXT when its bytes are UTF-8 (as every schema-1 path is), else a
    BLOB of its bytes. SQLite never equates TEXT with a BLOB, so each file has one key."""
    raw = path_bytes(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _from_db(value: str | bytes) -> str:
    """The path as Python names the file (surrogate escapes for bytes that are not UTF-8)."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _note_raw_paths(conn: sqlite3.Connection, paths: Sequence[str | bytes]) -> None:
    """Raise the schema version, in the caller's transaction, when a BLOB path is stored:
    a program that knows schema 1 only would hand such a path on as bytes."""
    if any(isinstance(p, bytes) for p in paths):
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version' "
                     "AND CAST(value AS INTEGER) < ?",
                     (str(RAW_PATHS_VERSION), RAW_PATHS_VERSION))
