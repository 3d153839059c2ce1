"""Raw embeddings on disk: append-only ``.npy`` shards, memory-mapped for reading.

Keeping the raw vectors lets the ANN index be retrained or tuned, exact ground
truth be computed and PQ results be re-ranked, all without touching images.
Vector id ``i`` is row ``i`` of the shards taken in order (see catalog.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from common.errors import VisearchError
from index.store.atomic import write_atomic
from index.store.catalog import Shard
from index.store.wal import is_wal, map_wal

VECTOR_DTYPES = ("float16", "float32")
# Vectors per shard: the most a killed build has to embed again.
DEFAULT_SHARD_SIZE = 8192
SAMPLE_SEED = 1234


class VectorStoreError(VisearchError):
    """Shard files do not match the catalog."""


def write_shard(directory: Path, shard_no: int, first_id: int, vectors: np.ndarray,
                dtype: str) -> Shard:
    """Write one shard atomically; the caller records it in the catalog afterwards."""
    if dtype not in VECTOR_DTYPES:
        raise ValueError(f"vector dtype must be one of {VECTOR_DTYPES}, not {dtype}")
    directory.mkdir(parents=True, exist_ok=True)
    name = f"shard-{shard_no:06d}.npy"
    data = np.ascontiguousarray(vectors, dtype=dtype)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, data)

    write_atomic(directory / name, save)
    return Shard(shard_no, name, first_id, len(data))


def remove_orphans(directory: Path, shards: Sequence[Shard]) -> list[Path]:
    """Delete shard files a killed build wrote but never recorded; returns what went."""
    known = {s.file for s in shards}
    removed = []
    if directory.is_dir():
        for path in directory.iterdir():
            if path.name not in known and (path.suffix in (".npy", ".tmp") or is_wal(path.name)):
                path.unlink()
                removed.append(path)
    return removed


class VectorStore:
    """Read-only view of the shards listed in the catalog."""

    def __init__(self, directory: Path, shards: Sequence[Shard], dim: int):
        self.directory = Path(directory)
        self.dim = dim
        self.shards = list(shards)
        self._arrays: list[np.ndarray] = []
        expected = 0
        for shard in self.shards:
            if shard.first_id != expected:
                raise VectorStoreError(f"shard {shard.file} starts at id {shard.first_id}, "
                                       f"expected {expected}")
            path = self.directory / shard.file
            try:
                array = map_wal(path, shard.count, dim) if is_wal(shard.file) else \
                    np.load(path, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise VectorStoreError(f"cannot read vector shard {path}: {exc}") from exc
            if array.shape != (shard.count, dim):
                raise VectorStoreError(f"{path} has shape {array.shape}, "
                                       f"expected {(shard.count, dim)}")
            self._arrays.append(array)
            expected += shard.count
        self.count = expected
        self._starts = np.array([s.first_id for s in self.shards], dtype=np.int64)

    def get(self, ids: np.ndarray) -> np.ndarray:
        """Vectors for ``ids`` as float32, re-normalised after the float16 round trip."""
        return normalise(self.raw(ids))

    def raw(self, ids: np.ndarray) -> np.ndarray:
        """The stored values of ``ids`` as float32, not re-normalised (exports)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.count):
            raise IndexError(f"vector ids out of range 0..{self.count - 1}")
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        which = np.searchsorted(self._starts, ids, side="right") - 1
        for shard_index in np.unique(which):
            mask = which == shard_index
            rows = ids[mask] - self._starts[shard_index]
            out[mask] = self._arrays[shard_index][rows]
        return out

    def iter_batches(self, ids: np.ndarray, batch_size: int = 65536
                     ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, float32 vectors) in batches, for training, adding and ground truth."""
        ids = np.asarray(ids, dtype=np.int64)
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            yield chunk, self.get(chunk)


def sample_ids(ids: np.ndarray, size: int, seed: int = SAMPLE_SEED) -> np.ndarray:
    """A seeded sample of ``ids`` in id order (training sets, evaluation queries)."""
    if size >= len(ids):
        return ids
    return np.sort(np.random.default_rng(seed).choice(ids, size=size, replace=False))


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    vectors /= norms
    return vectors
