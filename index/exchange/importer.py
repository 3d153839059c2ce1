"""Store embeddings read from an exchange layout and publish an index over them.

The precomputed-vector path (``index.build.vector_import``) for folders of any
size: batches stream from the reader into vector shards and bulk catalog rows
(``Catalog.add_keys``), each shard with its rows in one transaction, so an
interrupted import keeps what it stored and memory holds one shard.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedder.config import ModelIdentity
from index.build.publish import IndexingOptions, IndexingResult, publish_index
from index.exchange.layouts import Batch, ExchangeError, sidecar_identity
from index.exchange.reader import read_batches
from index.store.atomic import reporting_disk_full
from index.store.contract import precomputed_identity, record_or_check
from index.store.directory import IndexDirectory
from index.store.vectors import write_shard

# Rows per stored shard for imports: fewer, larger transactions than a build's.
IMPORT_SHARD_ROWS = 65536
# Vectors already this close to unit length (float16 rounding) are stored as given, so an
# export -> import round trip stores the same bits; the store re-normalises on reading.
UNIT_TOLERANCE = 2e-3


@dataclass(frozen=True)
class ImportReport:
    rows: int
    store_seconds: float  # reading, shards and catalog rows
    indexing: IndexingResult
    identity: ModelIdentity

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.store_seconds if self.store_seconds else 0.0


def identity_for(folder: Path, dim: int, given: ModelIdentity | None) -> ModelIdentity:
    """Flags win; then the identity an export recorded; else "precomputed"."""
    identity = given or sidecar_identity(folder) or precomputed_identity(dim)
    if identity.embed_dim != dim:
        raise ExchangeError(f"{folder} holds {dim}-d vectors but model {identity.name} "
                            f"embeds {identity.embed_dim}-d")
    return identity


def import_folder(directory: IndexDirectory, folder: Path, *,
                  identity: ModelIdentity | None = None,
                  options: IndexingOptions = IndexingOptions(),
                  shard_rows: int = IMPORT_SHARD_ROWS, batch_rows: int = 65536,
                  progress: Callable[[int], object] | None = None) -> ImportReport:
    """Import every row of ``folder`` into ``directory`` and publish a new version.

    A key already live in the index gets a new id (its old one is retired), as a
    changed file does in a build.
    """
    batches = read_batches(folder, batch_rows)
    first = next(batches, None)
    if first is None or len(first) == 0:
        raise ExchangeError(f"{folder} holds no embeddings")
    dim = int(first.vectors.shape[1])
    identity = identity_for(folder, dim, identity)
    start = time.perf_counter()
    with directory.build_lock(create=True), reporting_disk_full(directory.path):
        catalog = directory.catalog()
        catalog.mark_interrupted()
        identity = record_or_check(catalog, identity)
        run_id = catalog.start_run()
        try:
            next_id = catalog.next_id()
            shards = catalog.shards()
            shard_no = shards[-1].shard + 1 if shards else 0
            rows = 0
            for chunk in _rechunk(_chain(first, batches), shard_rows):
                vectors = _unit(chunk.vectors, dim)
                shard = write_shard(directory.vectors_dir, shard_no, next_id, vectors,
                                    options.vector_dtype)
                # No file bytes, so no content hash: "" keeps the sha256 index append-only
                # (a random hash per row makes its B-tree the bottleneck, ~60k rows/s).
                catalog.add_keys(shard, chunk.keys, run_id, chunk.metadata)
                shard_no, next_id, rows = shard_no + 1, next_id + len(chunk), rows + len(chunk)
                if progress is not None:
                    progress(len(chunk))
            seconds = time.perf_counter() - start
            result = publish_index(directory, catalog, identity, options, run_id)
        except BaseException:
            catalog.finish_run(run_id, "failed", embedded=0, reused=0, failed=0)
            raise
        catalog.finish_run(run_id, "done", embedded=0, reused=0, failed=0)
        catalog.close()
    return ImportReport(rows, seconds, result, identity)


def _chain(first: Batch, rest: Iterator[Batch]) -> Iterator[Batch]:
    yield first
    yield from rest


def _rechunk(batches: Iterator[Batch], rows: int) -> Iterator[Batch]:
    """Batches of exactly ``rows`` rows (the last may be short), whatever the files hold."""
    pending: list[Batch] = []
    held = 0
    for batch in batches:
        pending.append(batch)
        held += len(batch)
        while held >= rows:
            joined = _join(pending)
            yield Batch(joined.keys[:rows], joined.vectors[:rows], joined.metadata[:rows])
            rest = Batch(joined.keys[rows:], joined.vectors[rows:], joined.metadata[rows:])
            pending, held = ([rest], len(rest)) if len(rest) else ([], 0)
    if held:
        yield _join(pending)


def _join(batches: list[Batch]) -> Batch:
    if len(batches) == 1:
        return batches[0]
    return Batch([k for b in batches for k in b.keys],
                 np.concatenate([b.vectors for b in batches]),
                 [m for b in batches for m in (b.metadata or [{}] * len(b))])


def _unit(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Rows at unit length: unchanged when they already are (within float16 rounding)."""
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise ExchangeError(f"vectors of shape {vectors.shape} among {dim}-d ones")
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise ExchangeError("some vectors are zero or not finite; they cannot be searched")
    if np.all(np.abs(norms - 1) <= UNIT_TOLERANCE):
        return out
    return out / norms[:, None]
