"""The build's write stage: vectors become a shard file and catalog rows, together or not at all."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from index.store.catalog import Catalog, ImageRecord
from index.store.directory import IndexDirectory
from index.store.vectors import VectorStore, write_shard


class ShardWriter:
    """Buffers new vectors and writes them as a shard plus catalog rows, atomically together.

    Every ``shard_size`` vectors a shard is flushed, so a killed build loses at most
    one unflushed shard and a rerun embeds only what was not stored.
    """

    def __init__(self, directory: IndexDirectory, catalog: Catalog, run_id: int, dim: int,
                 dtype: str, shard_size: int):
        self.directory = directory
        self.catalog = catalog
        self.run_id = run_id
        self.dim = dim
        self.dtype = dtype
        self.shard_size = shard_size
        self.next_id = catalog.next_id()
        shards = catalog.shards()
        self.next_shard = shards[-1].shard + 1 if shards else 0
        self._images: list[ImageRecord] = []
        self._vectors: list[np.ndarray] = []
        self._pending_hash: dict[str, int] = {}
        self._store: VectorStore | None = None

    def write(self, items: Sequence[tuple[ImageRecord, np.ndarray]]) -> None:
        for record, vector in items:
            self._pending_hash.setdefault(record.sha256, len(self._images))
            self._images.append(record)
            self._vectors.append(vector)
            if len(self._images) >= self.shard_size:
                self.flush()

    def keep(self, records: Sequence[ImageRecord]) -> None:
        """Files copied or touched with unchanged bytes keep their ids; size and mtime move."""
        for record in records:
            self.catalog.touch(record.id, record.size, record.mtime_ns)

    def stored_vector(self, sha256: str) -> np.ndarray | None:
        """The vector of identical bytes stored earlier, from the buffer or the store."""
        if sha256 in self._pending_hash:
            return self._vectors[self._pending_hash[sha256]]
        row_id = self.catalog.id_with_hash(sha256)
        if row_id is None:
            return None
        if self._store is None or row_id >= self._store.count:
            self._store = self.directory.vector_store(self.catalog, self.dim)
        return self._store.get(np.array([row_id]))[0]

    def flush(self) -> None:
        if not self._images:
            return
        shard = write_shard(self.directory.vectors_dir, self.next_shard, self.next_id,
                            np.stack(self._vectors), self.dtype)
        self.catalog.add_shard(shard, self._images, self.run_id)
        self.next_id += shard.count
        self.next_shard += 1
        self._images, self._vectors, self._pending_hash = [], [], {}
