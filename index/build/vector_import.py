"""Add precomputed embeddings to an index directory, without images or a model.

For embeddings computed elsewhere (another runner, a cluster job) and for
index-only tests and benchmarks on synthetic vectors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from embedder.config import ModelIdentity
from index.build.publish import IndexingOptions, IndexingResult, publish_index
from index.build.writer import ShardWriter
from index.store.catalog import ImageRecord
from index.store.contract import record_or_check
from index.store.directory import IndexDirectory
from index.store.vectors import DEFAULT_SHARD_SIZE, normalise


def import_vectors(directory: IndexDirectory, vectors: np.ndarray, keys: Sequence[str],
                   identity: ModelIdentity, options: IndexingOptions = IndexingOptions(),
                   shard_size: int = DEFAULT_SHARD_SIZE) -> IndexingResult:
    """Store ``vectors`` (normalised here) under ``keys`` and publish a new index version.

    ``keys`` play the role of file paths in the catalog: unique and stable. Vectors
    without a model use ``index.store.contract.precomputed_identity(dim)``.
    """
    vectors = normalise(np.array(vectors, dtype=np.float32, ndmin=2, copy=True))
    if len(vectors) != len(keys) or vectors.shape[1] != identity.embed_dim:
        raise ValueError(f"{len(keys)} keys and {identity.embed_dim}-d identity do not fit "
                         f"vectors of shape {vectors.shape}")
    with directory.writing(create=True) as catalog:
        record_or_check(catalog, identity)
        run_id = catalog.start_run()
        writer = ShardWriter(directory, catalog, run_id, identity.embed_dim,
                             options.vector_dtype, shard_size)
        writer.write([(ImageRecord(key, 0, 0, hashlib.sha256(key.encode()).hexdigest()), vector)
                      for key, vector in zip(keys, vectors, strict=True)])
        writer.flush()
        result = publish_index(directory, catalog, identity, options, run_id)
        catalog.finish_run(run_id, "done", embedded=0, reused=0, failed=0)
    return result
