"""A Searcher that takes writes while it serves: the online writer's in-memory index.

faiss may search from many threads at once but must not be searched while ids are
added or removed, so searches share a read lock and a write takes it alone (a
write is a few milliseconds). Vectors written since the version was loaded are kept
in memory too (LiveStore) so exact re-ranking sees them before the next publish.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np

from index.ann.query import Hits, SearchParams
from index.ann.refine_store import RamStore
from index.ann.search import Searcher
from index.store.directory import IndexDirectory
from index.store.vectors import VectorStore


class ReadWriteLock:
    """Many readers or one writer; a waiting writer holds new readers back."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._waiting_writers = 0

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and not self._waiting_writers)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            self._cond.wait_for(lambda: not self._writing and not self._readers)
            self._waiting_writers -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class LiveStore(VectorStore):
    """The stored vectors of a version plus those written after it, which are the ids from
    ``base.count`` on, in order (the writer allocates them one after another).

    The version's rows are read from ``base`` whatever it is, so an index whose manifest
    chose the in-RAM re-rank store (index.ann.refine_store) re-ranks from RAM here too;
    written rows are in RAM (float32, as stored) until a publish moves them to ``base``.
    """

    def __init__(self, base: VectorStore):  # adopts ``base``; no super().__init__
        self.__dict__.update(base.__dict__)
        self.base = base
        self.base_count = base.count
        self._extra = np.zeros((0, base.dim), dtype=np.float32)

    def extend(self, first_id: int, vectors: np.ndarray) -> None:
        if first_id != self.count:
            raise ValueError(f"new ids must continue at {self.count}, not {first_id}")
        self._extra = np.concatenate([self._extra, vectors.astype(np.float32)])
        self.count += len(vectors)

    def get(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        new = ids >= self.base_count
        if not new.any():
            return self.base.get(ids)
        if ids.max() >= self.count:
            raise IndexError(f"vector ids out of range 0..{self.count - 1}")
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        out[~new] = self.base.get(ids[~new])
        out[new] = self._extra[ids[new] - self.base_count]
        return out


class LiveSearcher(Searcher):
    """One version's index, changed in place by the online writer."""

    fixed_index = False  # written in place: no GPU copy (it would go stale), no mmap

    def __init__(self, directory: IndexDirectory | str | Path, version: int | None = None,
                 *, refine_store: str | None = None):
        super().__init__(directory, version, refine_store=refine_store)
        self.store: LiveStore = LiveStore(self.store)
        self.lock = ReadWriteLock()

    def search_unit(self, q: np.ndarray, params: SearchParams) -> Hits:
        with self.lock.reading():
            return super().search_unit(q, params)

    def held_ids(self) -> np.ndarray:
        with self.lock.reading():
            return super().held_ids()

    def apply(self, first_id: int, vectors: np.ndarray, remove: np.ndarray) -> None:
        """Remove ids, then add ``vectors`` as ids ``first_id...``: visible to the next search.
        ``vectors`` are at unit length, as stored (after the dtype round trip)."""
        with self.lock.writing():
            if len(remove):
                self.index.remove_ids(faiss.IDSelectorBatch(np.asarray(remove, np.int64)))
            if len(vectors):
                ids = np.arange(first_id, first_id + len(vectors), dtype=np.int64)
                self.store.extend(first_id, vectors)
                self.index.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids)

    def rebase(self, store: VectorStore) -> None:
        """After a publish the shards hold every written vector: drop the in-memory copies
        (with the in-RAM re-rank store, they join its copy: only the new rows are read)."""
        previous = self.store.base
        if isinstance(previous, RamStore):
            store = RamStore(store, previous)  # outside the lock: searches go on meanwhile
        with self.lock.writing():
            self.store = LiveStore(store)
