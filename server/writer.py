"""The online writer of a ``--writable`` server: Upsert and Delete, durable when acknowledged,
searchable by the next request, published as ordinary versions now and then.

The server is the directory's single writer: it holds the build lock while it runs,
so a ``visearch build`` fails at once, naming it. A write is, under one lock:
vectors appended to the write-ahead shard and fsynced (index/store/wal.py), catalog
rows committed in one SQLite transaction (the durability point), then the in-memory
index updated (index/ann/live.py). Every ``publish_every`` writes or
``publish_seconds`` seconds, and at shutdown, the in-memory index is published as a
new version, so a restart or a read-only replica sees the writes. A server killed
before publishing loses nothing: at start the writer publishes what the catalog holds
beyond the current version (``publish_index``), then serves that.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace

import faiss
import numpy as np

from common.errors import VisearchError
from index.ann.live import LiveSearcher
from index.ann.params import IndexOverrides
from index.build.publish import IndexingOptions, publish_index, settings_for
from index.store import metadata as meta
from index.store.catalog import ImageRecord
from index.store.contract import stored_identity
from index.store.directory import IndexDirectory
from index.store.manifest import utc_now
from index.store.upsert_fields import type_fields
from index.store.vectors import DEFAULT_SHARD_SIZE, normalise, remove_orphans
from index.store.wal import WalShard, is_wal
from server.config import ServerConfig
from server.service import SearchService

log = logging.getLogger("visearch.server")
EMBED_TIMEOUT_SECONDS = 120


class ReadOnlyServerError(VisearchError):
    """A write sent to a server that was not started with --writable."""


class InvalidItemError(VisearchError, ValueError):
    """An upsert item that cannot be stored: no key, no or two payloads, a bad vector."""


@dataclass(frozen=True)
class WriteItem:
    key: str
    image: bytes | None = None
    vector: np.ndarray | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeleteOutcome:
    removed: int
    unknown_keys: list[str]
    unknown_ids: list[int]


class OnlineWriter:
    def __init__(self, directory: IndexDirectory, service: SearchService, config: ServerConfig):
        self.directory = directory
        self.service = service
        self.config = config
        self._lock = threading.Lock()  # one write or publish at a time
        self._stop = threading.Event()
        self._held = directory.build_lock(holder=f"visearch serve --writable (pid {os.getpid()})")
        self._held.__enter__()
        try:
            self._open()
        except BaseException:
            self._held.__exit__(None, None, None)
            raise
        self._thread = threading.Thread(target=self._publish_loop, name="writer", daemon=True)
        self._thread.start()

    def _open(self) -> None:
        catalog = self.catalog = self.directory.catalog()
        catalog.mark_interrupted()
        meta.ensure_schema(catalog)
        # This server is the directory's only writer, so the field types it knows stay
        # true; typing an upsert's metadata needs no read of the catalog.
        self._field_types = meta.field_types(catalog)
        self._typing = threading.Lock()
        remove_orphans(self.directory.vectors_dir, catalog.shards())
        identity = stored_identity(catalog)
        assert identity is not None  # a served index has a recorded model
        run = catalog.start_run()
        caught_up = publish_index(self.directory, catalog, identity,
                                  IndexingOptions(progress=False, keep_spec=True), run)
        catalog.finish_run(run, "done", embedded=0, reused=0, failed=0)
        if caught_up.published:
            log.info("published version %d with the writes committed after the last "
                     "published version", caught_up.manifest.version)
        self.searcher = LiveSearcher(self.directory)
        self.service.index.swap(self.searcher)
        self.service.index.writable = True
        self.wal = self._open_wal(self.searcher.manifest.vector_dtype)
        self.run_id = catalog.start_run()
        self.pending = 0
        self.last_publish = time.monotonic()
        self._advise()
        log.info("writable: holding %s; publishing every %d writes or %.0f s",
                 self.directory.path, self.config.publish_every, self.config.publish_seconds)

    def _open_wal(self, dtype: str) -> WalShard:
        shards = self.catalog.shards()
        last = shards[-1] if shards else None
        dim = self.searcher.dim
        if last is not None and is_wal(last.file) and last.count < DEFAULT_SHARD_SIZE:
            return WalShard(self.directory.vectors_dir, last, dim)
        first = last.first_id + last.count if last else 0
        return WalShard.new(self.directory.vectors_dir, last.shard + 1 if last else 0, first,
                            dim, dtype)

    # --- writes -----------------------------------------------------------

    def upsert(self, items: list[WriteItem], allow_partial: bool = False
               ) -> list[int | Exception]:
        """Each item's new id or its error; without ``allow_partial`` one error writes nothing.

        Raises:
            InvalidItemError: some item is bad and ``allow_partial`` is false.
        """
        outcome: list[np.ndarray | Exception] = []
        pending = []
        keys: set[str] = set()
        items, typing_errors = self._typed(items)
        for i, item in enumerate(items):
            try:
                if i in typing_errors:
                    raise InvalidItemError(f"metadata: {typing_errors[i]}")
                vector_or_future = self._prepare(item, keys)
                if isinstance(vector_or_future, np.ndarray):
                    outcome.append(vector_or_future)
                else:
                    pending.append((i, vector_or_future))
                    outcome.append(np.empty(0))
            except Exception as exc:  # noqa: BLE001 - per-item errors travel in the result
                outcome.append(exc)
        for i, future in pending:
            try:
                outcome[i] = normalise(future.result(EMBED_TIMEOUT_SECONDS)[None].copy())[0]
            except Exception as exc:  # noqa: BLE001
                outcome[i] = exc
        bad = [(i, o) for i, o in enumerate(outcome) if isinstance(o, Exception)]
        if bad and not allow_partial:
            raise InvalidItemError(
                f"{len(bad)} of {len(items)} items are invalid, nothing was written: "
                + "; ".join(f"item {i} ({items[i].key!r}): {e}" for i, e in bad[:5]))
        vectors = [(i, o) for i, o in enumerate(outcome) if isinstance(o, np.ndarray)]
        good = [i for i, _ in vectors]
        ids = self._write([items[i] for i in good],
                          np.stack([v for _, v in vectors]) if vectors else None)
        results: list[int | Exception] = [o for o in outcome]  # type: ignore[misc]
        for i, new_id in zip(good, ids, strict=True):
            results[i] = new_id
        return results

    def _typed(self, items: list[WriteItem]) -> tuple[list[WriteItem], dict[int, Exception]]:
        """Items with their metadata typed as a sidecar's would be (index.store.
        upsert_fields), and the items whose metadata does not fit."""
        if not any(item.metadata for item in items):
            return items, {}
        with self._typing:
            typed, types = type_fields([item.metadata for item in items], self._field_types)
            used = {k for t in typed if isinstance(t, dict) for k in t}
            self._field_types.update((k, v) for k, v in types.items() if k in used)
        errors: dict[int, Exception] = {}
        out = []
        for i, (item, fields) in enumerate(zip(items, typed, strict=True)):
            if isinstance(fields, Exception):
                errors[i] = fields
                out.append(item)
            else:
                out.append(replace(item, metadata=fields))
        return out, errors

    def _prepare(self, item: WriteItem, keys: set[str]) -> np.ndarray | Future[np.ndarray]:
        """A unit vector, or the model's future for an image; InvalidItemError if bad."""
        if not item.key:
            raise InvalidItemError("an item needs a key")
        if item.key in keys:
            raise InvalidItemError("the key appears twice in this request")
        keys.add(item.key)
        if (item.image is None) == (item.vector is None):
            raise InvalidItemError("an item needs exactly one of image and embedding")
        if item.vector is not None:
            return self.searcher.prepare(item.vector)[0]
        model = self.service.model
        if model is None:
            raise InvalidItemError("this index holds precomputed vectors only: send an "
                                   "embedding")
        return model.submit(("image", model.to_input(item.image or b"")))

    def _write(self, items: list[WriteItem], vectors: np.ndarray | None) -> list[int]:
        if vectors is None:
            return []
        dtype = self.wal.dtype
        stored = normalise(vectors.astype(dtype).astype(np.float32))  # as the shards return them
        records = [ImageRecord(item.key, len(item.image or b""), time.time_ns(),
                               hashlib.sha256(item.image if item.image is not None
                                              else vector.astype(dtype).tobytes()).hexdigest())
                   for item, vector in zip(items, vectors, strict=True)]
        with self._lock:
            if self.wal.shard.count and self.wal.shard.count + len(items) > DEFAULT_SHARD_SIZE:
                self.wal.close()
                self.wal = WalShard.new(self.directory.vectors_dir, self.wal.shard.shard + 1,
                                        self.wal.shard.first_id + self.wal.shard.count,
                                        self.searcher.dim, str(dtype))
            replaced = self.catalog.ids_for_paths(item.key for item in items)
            first = self.wal.shard.first_id + self.wal.shard.count
            shard = self.wal.append(stored)
            used = {k for item in items for k in item.metadata}
            self.catalog.append_to_shard(shard, records, self.run_id,
                                         [item.metadata for item in items],
                                         {k: self._field_types[k] for k in sorted(used)})
            self.wal.committed(shard)  # durable from here on
            self.searcher.apply(first, stored, np.array(list(replaced.values()), np.int64))
            self.pending += len(items)
        self._advise()
        return list(range(first, first + len(items)))

    def delete(self, keys: list[str], ids: list[int]) -> DeleteOutcome:
        """Retire live items by key or id; gone from search when this returns."""
        with self._lock:
            by_key = self.catalog.ids_for_paths(keys)
            live = set(self.catalog.live_among(ids))
            targets = sorted(set(by_key.values()) | live)
            if targets:
                self.catalog.retire(targets, self.run_id)
                self.searcher.apply(0, np.zeros((0, self.searcher.dim), np.float32),
                                    np.array(targets, np.int64))
                self.pending += len(targets)
        return DeleteOutcome(len(targets), [k for k in keys if k not in by_key],
                             [int(i) for i in ids if int(i) not in live])

    # --- publishing -------------------------------------------------------

    def publish(self) -> int | None:
        """Publish the in-memory index as a new version if writes are pending; its number.

        The search defaults (nprobe, refine) and the recall tuned for them are carried
        unchanged, with ``tuned_vectors`` still the count they were measured at (Info:
        "tuned at N vectors (now M)"). Re-tuning here would be an exact search over every
        vector under the write lock at every publish, and would move the defaults (and
        latency) of every server following this directory between two writes; the trained
        index is the same, so the measurement stays a fair guide until `visearch build`
        or `visearch eval --apply` tunes again, which is the user's call.
        """
        with self._lock:
            if not self.pending:
                return None
            previous = self.searcher.manifest
            counts = self.catalog.counts()
            manifest = replace(
                previous, version=self.directory.next_version(), created=utc_now(),
                live_count=self.searcher.ntotal, stored_count=counts["stored"],
                failed_count=counts["failed"],
                build={"run_id": self.run_id, "max_id": self.catalog.next_id() - 1,
                       "retrained": False, "online": True, "faiss_version": faiss.__version__})

            def write(path: os.PathLike[str]) -> None:
                faiss.write_index(self.searcher.index, str(path))
                with open(path, "rb+") as handle:
                    os.fsync(handle.fileno())

            self.directory.publish(manifest, write)
            self.catalog.finish_run(self.run_id, "done", embedded=self.pending, reused=0,
                                    failed=0)
            self.run_id = self.catalog.start_run()  # later deletes are newer than this version
            self.searcher.manifest = manifest
            self.searcher.rebase(self.directory.vector_store(self.catalog, self.searcher.dim))
            self.pending = 0
            self.last_publish = time.monotonic()
        log.info("published version %d (%d vectors)", manifest.version, manifest.live_count)
        return manifest.version

    def _publish_loop(self) -> None:
        while not self._stop.wait(0.2):
            age = time.monotonic() - self.last_publish
            if self.pending >= self.config.publish_every or (
                    self.pending and age >= self.config.publish_seconds):
                try:
                    self.publish()
                except Exception:  # noqa: BLE001 - the writes are durable; the next try publishes
                    log.exception("publishing the online writes failed; retrying later")

    def _advise(self) -> None:
        """Say so when the automatic rule would now choose another index (retrain advice)."""
        m = self.searcher.manifest
        n = self.searcher.ntotal
        wanted = settings_for(n, m.dim, m, IndexOverrides()).spec
        advice = "" if wanted == m.index.spec else (
            f"the index holds {n:,} vectors; the automatic rule would now pick {wanted} "
            f"instead of {m.index.spec}: stop this server and run `visearch build --retrain` "
            f"on the stored vectors")
        if advice and wanted not in self.service.index.advice:
            log.warning("%s", advice)
        self.service.index.advice = advice

    def check_now(self) -> None:
        """SIGHUP: the writer is the only one changing CURRENT, so there is nothing to read."""

    def stop(self) -> None:
        """Publish what is pending, then let go of the directory."""
        self._stop.set()
        self._thread.join(timeout=30)
        try:
            self.publish()
        finally:
            self.catalog.finish_run(self.run_id, "done", embedded=0, reused=0, failed=0)
            self.catalog.close()
            self.wal.close()
            self._held.__exit__(None, None, None)


def start_writer(directory: IndexDirectory, service: SearchService,
                 config: ServerConfig) -> OnlineWriter:
    writer = OnlineWriter(directory, service, config)
    service.writer = writer
    return writer
