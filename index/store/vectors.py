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
FEW_ROWS = 256  # at most this many ids, 4 per shard, are read a row at a time (_copy_rows)
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


COMPACTED_PREFIX = "cshard-"


def is_compacted(name: str) -> bool:
    """A compacted shard covers an id range but holds only the rows still live; their ids
    are in a companion ``.ids.npy`` file (see index/build/compact.py)."""
    return name.startswith(COMPACTED_PREFIX)


def ids_file(name: str) -> str:
    return name.removesuffix(".npy") + ".ids.npy"


def shard_files(shards: Sequence[Shard]) -> set[str]:
    """Every file the catalog's shards use, companions included."""
    return {s.file for s in shards} | {ids_file(s.file) for s in shards if is_compacted(s.file)}


def remove_orphans(directory: Path, shards: Sequence[Shard]) -> list[Path]:
    """Delete shard files a killed build wrote but never recorded; returns what went."""
    known = shard_files(shards)
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
        self._row_ids: list[np.ndarray | None] = []  # ids of a compacted shard's rows
        expected = 0
        for shard in self.shards:
            if shard.first_id != expected:
                raise VectorStoreError(f"shard {shard.file} starts at id {shard.first_id}, "
                                       f"expected {expected}")
            path = self.directory / shard.file
            try:
                array = map_wal(path, shard.count, dim) if is_wal(shard.file) else \
                    np.load(path, mmap_mode="r")
                row_ids = np.load(self.directory / ids_file(shard.file)) \
                    if is_compacted(shard.file) else None
            except (OSError, ValueError) as exc:
                raise VectorStoreError(f"cannot read vector shard {path}: {exc}") from exc
            rows = shard.count if row_ids is None else len(row_ids)
            if array.shape != (rows, dim):
                raise VectorStoreError(f"{path} has shape {array.shape}, "
                                       f"expected {(rows, dim)}")
            # A plain view of the mapped buffer: np.memmap's indexing runs Python code
            # (__getitem__, __array_finalize__) per call, most of a re-rank's gather.
            self._arrays.append(array.view(np.ndarray))
            self._row_ids.append(row_ids)
            expected += shard.count
        self.count = expected
        self._starts = np.array([s.first_id for s in self.shards], dtype=np.int64)

    def dtype_of(self, shard_no: int) -> np.dtype:
        """The dtype a shard's vectors are stored in."""
        for shard, array in zip(self.shards, self._arrays, strict=True):
            if shard.shard == shard_no:
                return array.dtype
        raise KeyError(shard_no)

    def get(self, ids: np.ndarray) -> np.ndarray:
        """Vectors for ``ids`` as float32, re-normalised after the float16 round trip."""
        return normalise(self.raw(ids, np.float32))

    def raw(self, ids: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
        """The stored rows of ``ids`` as they are on disk (no re-normalisation)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.count):
            raise IndexError(f"vector ids out of range 0..{self.count - 1}")
        out = np.empty((len(ids), self.dim), dtype=dtype)
        which = np.searchsorted(self._starts, ids, side="right") - 1
        if len(ids) <= min(FEW_ROWS, 4 * len(self._arrays)):
            self._copy_rows(ids, which, out)
            return out
        # One pass grouping the ids by shard (a re-rank's candidates fall in dozens of
        # shards, one or two each): sorted once, then a slice per shard, not a mask.
        order = np.argsort(which, kind="stable")
        grouped = which[order]
        edges = np.flatnonzero(grouped[1:] != grouped[:-1]) + 1
        for begin, end in zip([0, *edges.tolist()], [*edges.tolist(), len(ids)], strict=True):
            if begin == end:
                continue
            shard_index = int(grouped[begin])
            positions = order[begin:end]
            wanted = ids[positions]
            row_ids = self._row_ids[shard_index]
            if row_ids is None:
                rows = wanted - self._starts[shard_index]
            else:
                rows = np.minimum(np.searchsorted(row_ids, wanted), len(row_ids) - 1)
                if len(row_ids) == 0 or np.any(row_ids[rows] != wanted):
                    raise IndexError("vector ids include deleted ones removed by compaction")
            out[positions] = self._arrays[shard_index][rows]
        return out

    def _copy_rows(self, ids: np.ndarray, which: np.ndarray, out: np.ndarray) -> None:
        """``raw`` for a few ids (one query's re-rank candidates, each in a shard of its
        own): a row at a time by plain indexing, ~1 us each, where a group per shard costs
        ~5 us of numpy calls."""
        arrays, row_ids, starts = self._arrays, self._row_ids, self._starts.tolist()
        for position, (shard_index, vid) in enumerate(zip(which.tolist(), ids.tolist(),
                                                          strict=True)):
            kept = row_ids[shard_index]
            if kept is None:
                row = vid - starts[shard_index]
            else:
                row = int(np.searchsorted(kept, vid))
                if row >= len(kept) or kept[row] != vid:
                    raise IndexError("vector ids include deleted ones removed by compaction")
            out[position] = arrays[shard_index][row]

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
