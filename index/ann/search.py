"""Nearest-neighbour search over one index version, with per-call parameters.

A Searcher is immutable and safe to share between threads: nprobe and the
re-ranking depth travel with each call, never as state on the shared index.
"""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np

from index.ann import faiss_index as ann
from index.ann import gpu_serve, tiers
from index.ann.query import MAX_CANDIDATES, MAX_K, Hits, InvalidQueryError, SearchParams
from index.ann.refine_store import RamStore
from index.store.catalog import Catalog
from index.store.directory import IndexDirectory
from index.store.manifest import Manifest
from index.store.roots import build_root, relative_to
from index.store.vectors import VectorStore

# A manifest not yet published, its index and the build's open catalog.
BuildParts = tuple[Manifest, faiss.Index, Catalog]


def _ties_by_id(ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equal scores (exact copies) in id order, so the order is the same at every depth and
    pages of one version concatenate to the unpaged ranking."""
    order = np.lexsort((ids, -scores), axis=-1)
    return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)


class Searcher:
    """The faiss index, raw vectors and catalog of one published version."""

    # The index never changes in place: it may be memory-mapped (--mmap) and plain searches
    # may run on GPU copies (index.ann.gpu_serve). LiveSearcher, written in place, says no.
    fixed_index = True

    def __init__(self, directory: IndexDirectory | str | Path, version: int | None = None,
                 *, refine_store: str | None = None, parts: BuildParts | None = None):
        """``refine_store`` "mmap" or "ram" overrides the manifest's choice; ``parts`` lets
        the build search an index it has not published yet (self-tuning)."""
        self.directory = directory if isinstance(directory, IndexDirectory) else \
            IndexDirectory(directory)
        if parts is None:
            self.manifest: Manifest = self.directory.manifest(version)
            self.index = ann.read_index(self.directory.index_path(self.manifest),
                                        mmap=ann.serve_mmap() and self.fixed_index)
            self.catalog = self.directory.catalog(readonly=True)
            self._owns_catalog = True
        else:
            self.manifest, self.index, self.catalog = parts
            self._owns_catalog = False
        store = self.directory.vector_store(self.catalog, self.manifest.dim)
        choice = refine_store or self.manifest.index.refine_store
        self.store: VectorStore = RamStore(store) if choice == "ram" and not \
            self.manifest.index.exact else store
        self.refine_store = "" if self.manifest.index.exact else choice  # what Info reports
        self.root = build_root(self.catalog)
        self.is_ivf = ann.ivf_of(self.index) is not None
        self.depth_dependent_scan = ann.depth_dependent_scan(self.index)
        # A build's own searches (self-tuning, parts given) stay on the CPU it serves from.
        self.gpu_index = gpu_serve.place(self.index, self.manifest.index) \
            if self.fixed_index and parts is None else None
        # Parameter objects are read-only to faiss and cost ~25 us to build: one per nprobe.
        self._params: dict[int | None, faiss.SearchParameters | None] = {None: None}

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def check_params(self, params: SearchParams, max_k: int = MAX_K,
                     max_candidates: int = MAX_CANDIDATES, offset: int = 0) -> None:
        """Parameters this index can honour; the one place they are validated. The
        candidate limit applies to what the search really visits: the tiered re-ranking
        (index/ann/tiers.py) of a page at ``offset`` reads the PQ candidates of the tier
        that holds position offset + k, up to twice (offset + k) * refine_factor."""
        if not 1 <= params.k <= max_k:
            raise InvalidQueryError(f"k must be between 1 and {max_k}, not {params.k}")
        refine = self.refine_for(params)
        ranked = offset + params.k
        depth = tiers.candidate_depth(ranked, refine) if refine > 1 else ranked
        if depth > max_candidates:
            what = f"offset + k = {ranked:,}" if offset else f"k = {ranked:,}"
            tier = f" (its tier ends at {tiers.tier_bound(ranked):,}, times refine_factor " \
                   f"{refine})" if refine > 1 else ""
            raise InvalidQueryError(
                f"{what} needs {depth:,} candidates{tier}, over the limit of "
                f"{max_candidates:,} (--max-candidates); lower k, the page or refine_factor")
        if params.nprobe is not None:
            if not self.is_ivf:
                raise InvalidQueryError(f"nprobe applies to IVF indexes; this index is "
                                        f"{self.manifest.index.spec}")
            if params.nprobe < 1:
                raise InvalidQueryError(f"nprobe must be >= 1, not {params.nprobe}")
        if params.refine_factor is not None and params.refine_factor < 1:
            raise InvalidQueryError(f"refine factor must be >= 1, not {params.refine_factor}")

    def prepare(self, queries: np.ndarray) -> np.ndarray:
        """Validate query vectors and return them at unit length (cosine similarity)."""
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise InvalidQueryError(f"query vectors must have {self.dim} dimensions, "
                                    f"got shape {tuple(np.shape(queries))}")
        # One reduction checks every value: NaN or inf anywhere makes the sum non-finite.
        # (Checked in Python per row: numpy's per-call overhead is most of a 1-query search.)
        squared = (q * q).sum(axis=1)
        for value in squared.tolist():
            if not math.isfinite(value):
                raise InvalidQueryError("query vector contains NaN, infinity or values "
                                        "too large for float32")
            if value == 0:
                raise InvalidQueryError("query vector is all zeros")
        return q / np.sqrt(squared)[:, None]

    def search(self, queries: np.ndarray, params: SearchParams = SearchParams()) -> Hits:
        """Top-k by cosine similarity; PQ candidates re-ranked exactly when refine > 1."""
        self.check_params(params)
        return self.search_unit(self.prepare(queries), params)

    def search_unit(self, q: np.ndarray, params: SearchParams) -> Hits:
        """``search`` for queries already checked and at unit length (by ``check_params``,
        ``prepare`` or the model), so a request is validated and normalised once."""
        settings = self.manifest.index
        nprobe = (params.nprobe or settings.default_nprobe) if self.is_ivf else None
        refine = self.refine_for(params)
        # Candidates in fixed tiers (index/ann/tiers.py): the first k hits are the same at
        # every depth, so pages concatenate to the unpaged ranking.
        depth = params.k if refine == 1 else tiers.candidate_depth(params.k, refine)
        index = self.index if self.gpu_index is None or \
            max(depth, nprobe or 0) > gpu_serve.GPU_MAX_K else self.gpu_index
        if refine == 1:
            scores, ids = index.search(q, params.k, params=self._search_parameters(nprobe))
            return Hits(*_ties_by_id(ids, scores))
        candidates = self.candidates(q, depth, refine, nprobe, index)
        scores, ids = self.rerank(q, candidates, params.k, refine)
        return Hits(ids, scores)

    def candidates(self, q: np.ndarray, depth: int, refine: int, nprobe: int | None,
                   index: faiss.Index | None = None,
                   params: faiss.SearchParameters | None = None) -> np.ndarray:
        """``depth`` ANN candidates per query in PQ order, for the tiered re-rank: the first
        ``16 * refine * 2**j`` of them the same at any depth (index/ann/tiers.py).

        A plain search gives that, except over codes whose scan is not prefix-stable:
        faiss's multi-bit RaBitQ scan skips a candidate whose 1-bit bound cannot beat the
        heap's current k-th score, a bound that holds with high probability only, and the
        heap depends on the depth asked for (~1% of queries at 1M had another top 32 in a
        search for 64). There each tier's candidates come from a search of that tier's
        depth, so they do not depend on how deep the query went: one search for a first
        page, one more per doubling beyond it."""
        index = self.index if index is None else index
        call = self._search_parameters(nprobe) if params is None else params

        def search_at(at: int) -> np.ndarray:
            scores, ids = index.search(q, at, params=call)
            return tiers.pq_order(ids, scores)

        if not self.depth_dependent_scan:
            return search_at(depth)
        out = tiers.by_tiers(search_at, depth, tiers.FIRST_TIER * refine)
        assert out is not None  # search_at never gives None
        return out

    def refine_for(self, params: SearchParams) -> int:
        """How many candidates per result are re-ranked exactly (1: none, exact indexes)."""
        refine = params.refine_factor or self.manifest.index.refine_factor
        return refine if refine > 1 and not self.manifest.index.exact else 1

    def _search_parameters(self, nprobe: int | None) -> faiss.SearchParameters | None:
        params = self._params.get(nprobe)
        if params is None and nprobe is not None:
            params = self._params[nprobe] = ann.search_parameters(self.index, nprobe)
        return params

    def rerank(self, q: np.ndarray, candidates: np.ndarray, k: int, refine: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products against the stored vectors; keeps the best k of each row,
        or with ``refine`` the first k of the tiered ranking of candidates in PQ order."""
        valid = candidates >= 0
        vectors = self.store.get(np.where(valid, candidates, 0)).reshape(
            *candidates.shape, self.dim)
        exact = np.matmul(vectors, q[:, :, None])[:, :, 0]
        exact[~valid] = -np.inf
        if refine is not None:
            return tiers.select(candidates, exact, k, refine)
        order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        ids = np.take_along_axis(np.where(valid, candidates, -1), order, axis=1)
        return np.take_along_axis(exact, order, axis=1).astype(np.float32), ids

    def held_ids(self) -> np.ndarray:
        """The ids this version holds, sorted: live images only (deleted ones were removed
        from its index), so evaluation samples queries and ground truth from them."""
        return np.sort(ann.stored_ids(self.index))

    def paths(self, ids: np.ndarray | list[int]) -> dict[int, str]:
        wanted = [int(i) for i in np.asarray(ids).reshape(-1) if i >= 0]
        return self.catalog.paths(wanted) if wanted else {}

    def shown_paths(self, ids: np.ndarray | list[int], absolute: bool = False) -> dict[int, str]:
        """Paths as a client sees them: relative to the build root unless ``absolute``."""
        paths = self.paths(ids)
        if absolute:
            return paths
        return {i: relative_to(p, self.root) for i, p in paths.items()}

    def close(self) -> None:
        if self._owns_catalog:
            self.catalog.close()
