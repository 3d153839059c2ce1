"""The catalog: SQLite mapping of stable vector ids to files, shards, failures and runs.

Ids are allocated in order and never reused: id ``i`` is row ``i`` of the raw
vector store, so the store needs no id column. A file that changes gets a new
id and its old one is marked deleted.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import repeat
from pathlib import Path

import numpy as np

from common.paths import display_path
from index.store.records import (  # noqa: F401 - re-exported: the catalog's records
    LOOKUP_CHUNK,
    SCHEMA,
    SCHEMA_VERSION,
    CatalogError,
    ImageRecord,
    Shard,
    _from_db,
    _note_raw_paths,
    _to_db,
    damaged,
)


class Catalog:
    """One SQLite database per index directory; safe to read while a build writes (WAL)."""

    def __init__(self, path: Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        if readonly and not self.path.exists():
            raise CatalogError(f"no catalog at {self.path}")
        self._local = threading.local()
        try:
            if not readonly:
                with self._conn() as conn:
                    conn.executescript(SCHEMA)
                    conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', '1')")
            row = self._conn().execute(
                "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise damaged(self.path, exc) from exc
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise CatalogError(f"catalog schema {version} is newer than this program "
                               f"({SCHEMA_VERSION}); upgrade visearch")

    def _conn(self) -> sqlite3.Connection:
        # One connection per thread: the server searches from a thread pool.
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open_readonly() if self.readonly else self._open_writable()
            self._local.conn = conn
        return conn

    def _open_writable(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _open_readonly(self) -> sqlite3.Connection:
        """A reader never writes: ``mode=ro`` sees a live writer's commits through WAL's
        shared memory; where that file cannot be created (a read-only mount, a full
        disk) the catalog is read as ``immutable``, a snapshot."""
        if os.access(self.path.parent, os.W_OK):
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
            try:
                conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
                return conn
            except sqlite3.OperationalError as exc:
                conn.close()
                if "disk" not in str(exc) and "unable to open" not in str(exc):
                    raise
        return sqlite3.connect(f"file:{self.path}?immutable=1", uri=True, timeout=30)

    def integrity_errors(self) -> list[str]:
        """SQLite's own full check of every page and index; empty when the file is sound."""
        try:
            rows = self._conn().execute("PRAGMA integrity_check").fetchall()
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        return [] if rows == [("ok",)] else [str(r[0]) for r in rows]

    def close(self) -> None:
        """Close this thread's connection; a writer first folds the write-ahead log into the
        database file, so the directory is whole without -wal/-shm files (copies, backups,
        read-only mounts, a reader on a full disk)."""
        conn = getattr(self._local, "conn", None)
        try:
            if conn is not None and not self.readonly:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # a full disk: the log stays beside the database, which reads it
        finally:
            self._close_connection()

    def _close_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def sql(self) -> sqlite3.Connection:
        """This thread's connection, for the stores that keep their own tables here
        (index.store.metadata)."""
        return self._conn()

    def get_meta(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        with self._conn() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # --- runs -------------------------------------------------------------

    def mark_interrupted(self) -> int:
        """Runs still 'running' when the build lock is taken were killed: say so."""
        with self._conn() as conn:
            return conn.execute("UPDATE runs SET status = 'interrupted' "
                                "WHERE status = 'running'").rowcount

    def running_runs(self) -> int:
        return int(self._conn().execute(
            "SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()[0])

    def start_run(self) -> int:
        with self._conn() as conn:
            cur = conn.execute("INSERT INTO runs (started, status) VALUES (?, 'running')",
                               (time.time(),))
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, status: str, *, embedded: int, reused: int,
                   failed: int) -> None:
        with self._conn() as conn:
            conn.execute("UPDATE runs SET finished = ?, status = ?, embedded = ?, reused = ?, "
                         "failed = ? WHERE id = ?",
                         (time.time(), status, embedded, reused, failed, run_id))

    # --- images -----------------------------------------------------------

    def live_by_path(self, paths: Iterable[str]) -> dict[str, ImageRecord]:
        rows: dict[str, ImageRecord] = {}
        paths = list(paths)
        for start in range(0, len(paths), LOOKUP_CHUNK):
            chunk = paths[start:start + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in self._conn().execute(
                    f"SELECT path, size, mtime_ns, sha256, id FROM images "
                    f"WHERE deleted = 0 AND path IN ({marks})", [_to_db(p) for p in chunk]):
                path = _from_db(row[0])
                rows[path] = ImageRecord(path, *row[1:])
        return rows

    def id_with_hash(self, sha256: str) -> int | None:
        """A live id with these bytes (a deleted one's vector may be compacted away)."""
        row = self._conn().execute("SELECT id FROM images WHERE sha256 = ? AND deleted = 0 "
                                   "LIMIT 1", (sha256,)).fetchone()
        return None if row is None else int(row[0])

    def paths(self, ids: Sequence[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), LOOKUP_CHUNK):  # SQLite caps bound variables
            chunk = ids[start:start + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            out.update((row_id, _from_db(path)) for row_id, path in self._conn().execute(
                f"SELECT id, path FROM images WHERE id IN ({marks})", chunk))
        return out

    def live_record(self, row_id: int) -> ImageRecord | None:
        """The stored file of a live (not deleted) id, or None: what the server may show."""
        row = self._conn().execute(
            "SELECT path, size, mtime_ns, sha256 FROM images WHERE id = ? AND deleted = 0",
            (int(row_id),)).fetchone()
        if row is None:
            return None
        return ImageRecord(_from_db(row[0]), int(row[1]), int(row[2]), str(row[3]), int(row_id))

    def ids_for_paths(self, paths: Iterable[str]) -> dict[str, int]:
        return {path: row.id for path, row in self.live_by_path(paths).items()}

    def live_ids(self, max_id: int | None = None) -> np.ndarray:
        query = "SELECT id FROM images WHERE deleted = 0"
        args: tuple[int, ...] = ()
        if max_id is not None:
            query += " AND id <= ?"
            args = (max_id,)
        return np.array([r[0] for r in self._conn().execute(query + " ORDER BY id", args)],
                        dtype=np.int64)

    def live_rows(self) -> list[tuple[int, str]]:
        """(id, path) of every live image, in id order (prune and delete match paths here)."""
        return [(int(i), _from_db(p)) for i, p in self._conn().execute(
            "SELECT id, path FROM images WHERE deleted = 0 ORDER BY id")]

    def live_among(self, ids: Sequence[int]) -> list[int]:
        """The ids of ``ids`` that name live images, in the given order."""
        ids = [int(i) for i in ids]
        live: set[int] = set()
        for start in range(0, len(ids), LOOKUP_CHUNK):
            chunk = ids[start:start + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            live.update(r[0] for r in self._conn().execute(
                f"SELECT id FROM images WHERE deleted = 0 AND id IN ({marks})", chunk))
        return [i for i in ids if i in live]

    def retire(self, ids: Sequence[int], run_id: int) -> int:
        """Mark ``ids`` deleted by ``run_id``, in one transaction; returns how many were live.
        Their vectors stay in the shards but no published index holds them again."""
        with self._conn() as conn:
            return sum(conn.execute("UPDATE images SET deleted = 1, deleted_run = ? "
                                    "WHERE id = ? AND deleted = 0", (run_id, int(i))).rowcount
                       for i in ids)

    def deleted_since(self, run_id: int) -> np.ndarray:
        """Ids retired by runs after ``run_id`` (their files changed)."""
        return np.array([r[0] for r in self._conn().execute(
            "SELECT id FROM images WHERE deleted = 1 AND deleted_run > ? ORDER BY id",
            (run_id,))], dtype=np.int64)

    def next_id(self) -> int:
        row = self._conn().execute("SELECT MAX(id) FROM images").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def counts(self) -> dict[str, int]:
        conn = self._conn()
        live = conn.execute("SELECT COUNT(*) FROM images WHERE deleted = 0").fetchone()[0]
        total = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        failed = conn.execute("SELECT COUNT(*) FROM failures").fetchone()[0]
        return {"live": live, "stored": total, "failed": failed}

    def touch(self, row_id: int, size: int, mtime_ns: int) -> None:
        """A file was copied or touched but its bytes are unchanged: keep its id."""
        with self._conn() as conn:
            conn.execute("UPDATE images SET size = ?, mtime_ns = ? WHERE id = ?",
                         (size, mtime_ns, row_id))

    def add_shard(self, shard: Shard, images: Sequence[ImageRecord], run_id: int) -> None:
        """Record a written shard and its images in one transaction.

        Files whose path was live under another id (changed content) lose that id.
        """
        if len(images) != shard.count:
            raise CatalogError(f"shard {shard.shard}: {shard.count} vectors, {len(images)} images")
        with self._conn() as conn:
            paths = _store_rows(conn, shard.first_id, images, run_id)
            conn.execute("INSERT INTO shards VALUES (?, ?, ?, ?)",
                         (shard.shard, shard.file, shard.first_id, shard.count))
            conn.executemany("DELETE FROM failures WHERE path = ?", [(p,) for p in paths])

    def append_to_shard(self, shard: Shard, images: Sequence[ImageRecord], run_id: int,
                        metadata: Sequence[dict[str, str]] = (),
                        field_types: Mapping[str, str] | None = None) -> None:
        """An online write: ``images`` are the last rows of ``shard`` (a write-ahead shard
        whose row count grows), stored with their metadata (and the types of its fields,
        in index.store.metadata's ``metadata_fields`` table) in one transaction. A key that
        was live loses its old id, as a changed file does in ``add_shard``."""
        first = shard.first_id + shard.count - len(images)
        with self._conn() as conn:
            _store_rows(conn, first, images, run_id)
            if field_types:
                conn.executemany("INSERT OR REPLACE INTO metadata_fields VALUES (?, ?)",
                                 sorted(field_types.items()))
            conn.executemany("INSERT INTO metadata VALUES (?, ?, ?)",
                             [(first + i, k, v) for i, meta in enumerate(metadata)
                              for k, v in sorted(meta.items())])
            conn.execute("INSERT OR REPLACE INTO shards VALUES (?, ?, ?, ?)",
                         (shard.shard, shard.file, shard.first_id, shard.count))

    def replace_shard_file(self, shard_no: int, file: str) -> None:
        """Point a shard at a rewritten file (compaction); its id range stays."""
        with self._conn() as conn:
            conn.execute("UPDATE shards SET file = ? WHERE shard = ?", (file, shard_no))

    def add_keys(self, shard: Shard, keys: Sequence[str], run_id: int,
                 metadata: Sequence[dict[str, str]] = ()) -> None:
        """``add_shard`` for imported vectors (no file: size, mtime and hash empty), at
        ~200k rows/s: set-based SQL retires the old ids of incoming keys through a temporary
        table, skipped while no row is live, and the metadata joins the same transaction."""
        if len(keys) != shard.count:
            raise CatalogError(f"shard {shard.shard}: {shard.count} vectors, {len(keys)} keys")
        stored = [k if k.isascii() else _to_db(k) for k in keys]
        first = shard.first_id
        with self._conn() as conn:
            _note_raw_paths(conn, stored)
            if conn.execute("SELECT 1 FROM images WHERE deleted = 0 LIMIT 1").fetchone():
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS incoming (path PRIMARY KEY)")
                conn.execute("DELETE FROM incoming")
                conn.executemany("INSERT OR IGNORE INTO incoming VALUES (?)",
                                 zip(stored, strict=True))
                conn.execute("UPDATE images SET deleted = 1, deleted_run = ? WHERE deleted = 0 "
                             "AND path IN (SELECT path FROM incoming)", (run_id,))
            conn.executemany(
                "INSERT INTO images (id, path, size, mtime_ns, sha256, run_id) "
                "VALUES (?, ?, 0, 0, '', ?)",
                zip(range(first, first + len(stored)), stored, repeat(run_id)))
            conn.executemany("INSERT INTO metadata VALUES (?, ?, ?)",
                             [(first + i, k, v) for i, meta in enumerate(metadata)
                              for k, v in sorted(meta.items())])
            conn.execute("INSERT INTO shards VALUES (?, ?, ?, ?)",
                         (shard.shard, shard.file, shard.first_id, shard.count))

    def iter_live(self, chunk: int = 65536) -> Iterator[list[tuple[int, str]]]:
        """(id, path) of live images in id order, ``chunk`` rows at a time (exports)."""
        last = -1
        while True:
            rows = [(int(i), _from_db(p)) for i, p in self._conn().execute(
                "SELECT id, path FROM images WHERE deleted = 0 AND id > ? ORDER BY id LIMIT ?",
                (last, chunk))]
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def metadata_of(self, first: int, last: int) -> dict[int, dict[str, str]]:
        """Metadata of the ids in ``first..last`` that have any."""
        out: dict[int, dict[str, str]] = {}
        for row_id, key, value in self._conn().execute(
                "SELECT id, key, value FROM metadata WHERE id BETWEEN ? AND ? ORDER BY id, key",
                (first, last)):
            out.setdefault(int(row_id), {})[key] = value
        return out

    def metadata_keys(self) -> list[str]:
        return [r[0] for r in self._conn().execute(
            "SELECT DISTINCT key FROM metadata ORDER BY key")]

    def shards(self) -> list[Shard]:
        return [Shard(*r) for r in self._conn().execute(
            "SELECT shard, file, first_id, count FROM shards ORDER BY shard")]

    # --- failures ---------------------------------------------------------

    def record_failures(self, failures: Sequence[tuple[str, str]], run_id: int) -> None:
        """Reasons are free text that may quote a path: stored in their readable form."""
        rows = [(_to_db(path), display_path(reason), run_id) for path, reason in failures]
        with self._conn() as conn:
            _note_raw_paths(conn, [path for path, _, _ in rows])
            conn.executemany("INSERT OR REPLACE INTO failures VALUES (?, ?, ?)", rows)

    def failures(self) -> list[tuple[str, str]]:
        return [(_from_db(r[0]), r[1]) for r in self._conn().execute(
            "SELECT path, reason FROM failures ORDER BY path")]


def _store_rows(conn: sqlite3.Connection, first_id: int, images: Sequence[ImageRecord],
                run_id: int) -> list[str | bytes]:
    """Insert ``images`` as ids first_id.. in the caller's transaction; a path (or key) that
    was live under another id loses it. Returns the paths as stored."""
    paths = [_to_db(im.path) for im in images]
    _note_raw_paths(conn, paths)
    conn.executemany(
        "UPDATE images SET deleted = 1, deleted_run = ? WHERE path = ? AND deleted = 0",
        [(run_id, path) for path in paths])
    conn.executemany(
        "INSERT INTO images (id, path, size, mtime_ns, sha256, run_id) VALUES (?, ?, ?, ?, ?, ?)",
        [(first_id + i, path, im.size, im.mtime_ns, im.sha256, run_id)
         for i, (path, im) in enumerate(zip(paths, images, strict=True))])
    return paths
