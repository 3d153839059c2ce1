"""The write-ahead shard of an online writer: raw rows appended in place and fsynced.

Small writes must not make one tiny ``.npy`` each, and an ``.npy`` header cannot
grow, so the writable server appends raw ``dtype`` rows to ``wal-NNNNNN.DTYPE``.
The catalog's shard row holds the committed row count, updated in the same SQLite
transaction as the images it stores: rows past that count (a write killed between
the fsync and the commit) are garbage and are overwritten by the next append.
VectorStore maps these files like any shard.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from index.store.atomic import fsync_dir
from index.store.catalog import Shard

WAL_PREFIX = "wal-"


def is_wal(name: str) -> bool:
    return name.startswith(WAL_PREFIX)


def wal_dtype(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def map_wal(path: Path, count: int, dim: int) -> np.ndarray:
    """The first ``count`` committed rows of a write-ahead shard, memory-mapped."""
    if count == 0:
        return np.zeros((0, dim), dtype=wal_dtype(path.name))
    return np.memmap(path, dtype=wal_dtype(path.name), mode="r", shape=(count, dim))


class WalShard:
    """Appends rows to one write-ahead shard; ``shard`` is its committed state."""

    def __init__(self, directory: Path, shard: Shard, dim: int):
        self.directory = directory
        self.shard = shard
        self.dim = dim
        self.dtype = np.dtype(wal_dtype(shard.file))
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / shard.file
        created = not path.exists()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        os.ftruncate(self._fd, shard.count * self.row_bytes)  # drop uncommitted rows
        os.fsync(self._fd)
        if created:
            fsync_dir(directory)

    @classmethod
    def new(cls, directory: Path, shard_no: int, first_id: int, dim: int,
            dtype: str) -> WalShard:
        return cls(directory, Shard(shard_no, f"{WAL_PREFIX}{shard_no:06d}.{dtype}", first_id,
                                    0), dim)

    @property
    def row_bytes(self) -> int:
        return self.dim * self.dtype.itemsize

    def append(self, vectors: np.ndarray) -> Shard:
        """Write ``vectors`` after the committed rows and fsync; returns the shard as it is
        once the caller commits the catalog rows for them."""
        data = np.ascontiguousarray(vectors, dtype=self.dtype).tobytes()
        os.pwrite(self._fd, data, self.shard.count * self.row_bytes)
        os.fsync(self._fd)
        return Shard(self.shard.shard, self.shard.file, self.shard.first_id,
                     self.shard.count + len(vectors))

    def committed(self, shard: Shard) -> None:
        self.shard = shard

    def close(self) -> None:
        os.close(self._fd)
