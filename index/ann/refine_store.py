"""Where exact re-ranking reads its vectors: the memory-mapped shards or a copy in RAM.

Re-ranking gathers ``k * refine`` rows per query. From the shards that is a
per-shard mask and copy, then a norm per row; from one contiguous in-RAM array
it is a single gather. The copy costs ``dim * 2`` bytes per stored vector
(float16), which is why it is a choice (``--refine-store ram``) and not the rule.
"""

from __future__ import annotations

import numpy as np

from index.store.vectors import VectorStore

REFINE_STORES = ("mmap", "ram")


class RamStore(VectorStore):
    """The stored vectors of one version, copied into one float16 array indexed by id.

    Rows removed by compaction (deleted ids) are zero; the index never returns them.
    ``previous``, a copy of an earlier state of the same ids (a live index's version
    before it published its writes), is reused: only the ids beyond it are read.
    """

    def __init__(self, base: VectorStore, previous: RamStore | None = None):
        self.__dict__.update(base.__dict__)  # adopts ``base``; no super().__init__
        rows = np.zeros((base.count, base.dim), dtype=np.float16)
        norms = np.ones(base.count, dtype=np.float32)
        first = 0
        if previous is not None:
            first = min(previous.count, base.count)
            rows[:first], norms[:first] = previous._rows[:first], previous._norms[:first]
        for start in range(first, base.count, 65536):
            ids = np.arange(start, min(base.count, start + 65536), dtype=np.int64)
            held = _held(base, ids)
            chunk = base.raw(ids[held], np.float32)
            rows[ids[held]] = chunk
            norms[ids[held]] = np.maximum(np.linalg.norm(chunk, axis=1), 1e-12)
        self._rows: np.ndarray = rows
        self._norms: np.ndarray = norms

    @property
    def nbytes(self) -> int:
        return int(self._rows.nbytes + self._norms.nbytes)

    def get(self, ids: np.ndarray) -> np.ndarray:
        """The same unit vectors as ``VectorStore.get``, from RAM."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if len(ids) and (ids.min() < 0 or ids.max() >= self.count):
            raise IndexError(f"vector ids out of range 0..{self.count - 1}")
        out = self._rows[ids].astype(np.float32)
        out /= self._norms[ids][:, None]
        return out


def _held(store: VectorStore, ids: np.ndarray) -> np.ndarray:
    """Which of ``ids`` a compacted shard still holds (all of them for plain shards)."""
    held = np.ones(len(ids), dtype=bool)
    starts = store._starts  # noqa: SLF001 - same package family, read-only
    which = np.searchsorted(starts, ids, side="right") - 1
    for shard_index in np.unique(which):
        row_ids = store._row_ids[shard_index]  # noqa: SLF001
        if row_ids is None:
            continue
        mask = which == shard_index
        held[mask] = np.isin(ids[mask], row_ids)
    return held
