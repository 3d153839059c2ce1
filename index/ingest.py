"""The build's decode -> embed -> store stages: new files become stored vectors and catalog rows.

Vectors are flushed to a shard and the catalog in one step every ``shard_size``
images, so a killed build loses at most one unflushed shard and a rerun
embeds only what was not stored.
"""

from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from embedder import DecodeLimits
from embedder.embedder import Embedder
from embedder.loader import DecodedBatch, DecodedFile, decoded_batches
from index.catalog import CatalogRow, NewImage
from index.plan import IngestStats, Plan
from index.store import ShardWriter


def ingest(planned: Plan, embedder: Embedder, writer: ShardWriter, *, batch_size: int,
           workers: int, limits: DecodeLimits, progress: bool = True) -> IngestStats:
    """Decode, embed and store every file of ``planned.todo``; failures are collected."""
    stats = IngestStats()
    start = time.perf_counter()
    batches = decoded_batches(planned.todo, embedder.preprocess, batch_size=batch_size,
                              workers=workers, limits=limits, draft_size=embedder.image_size,
                              pin_memory=embedder.pin_memory)
    with tqdm(total=len(planned.todo), unit="img", desc="embed", disable=not progress or None,
              smoothing=0.1) as bar:
        for batch in batches:
            _store_batch(batch, embedder, writer, planned.present, stats)
            bar.update(len(batch.files))
    writer.flush()
    stats.seconds = time.perf_counter() - start
    return stats


def _store_batch(batch: DecodedBatch, embedder: Embedder, writer: ShardWriter,
                 present: dict[str, CatalogRow], stats: IngestStats) -> None:
    stats.failed.extend((f.file.path, f.error or "") for f in batch.failed)
    decoded = batch.ok
    embed_rows: dict[str, int] = {}  # sha256 -> first row of the batch to embed
    copies: dict[int, np.ndarray] = {}  # row -> vector stored earlier
    for row, item in enumerate(decoded):
        sha256 = item.sha256 or ""
        old = present.get(item.file.path)
        if old is not None and old.sha256 == sha256:
            writer.catalog.touch(old.id, item.file.size, item.file.mtime_ns)
            stats.unchanged += 1
        elif sha256 not in embed_rows:
            vector = writer.stored_vector(sha256)
            if vector is None:
                embed_rows[sha256] = row
            else:
                copies[row] = vector
    rows = sorted(embed_rows.values())
    vectors = embedder.encode_images(batch.pixels[rows]) if rows else np.zeros((0, writer.dim))
    embedded = dict(zip(rows, vectors, strict=True))
    for row, item in enumerate(decoded):
        if row in embedded:
            writer.add(_new_image(item), embedded[row])
            stats.embedded += 1
        elif row in copies:
            writer.add(_new_image(item), copies[row])
            stats.reused += 1
        elif item.file.path not in present or present[item.file.path].sha256 != item.sha256:
            # identical bytes earlier in this batch
            writer.add(_new_image(item), embedded[embed_rows[item.sha256 or ""]])
            stats.reused += 1


def _new_image(item: DecodedFile) -> NewImage:
    return NewImage(item.file.path, item.file.size, item.file.mtime_ns, item.sha256 or "")
