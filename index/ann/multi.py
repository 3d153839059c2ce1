"""One search over several index directories (shards): the same per-call parameters on
every shard, the results merged into one exact top-k by score.

Ids are namespaced so they stay unique across shards: a hit's id is
``shard << SHARD_SHIFT | local id``. Shard 0's ids are its own ids, so a client of a
one-shard server sees nothing new. The shift keeps ids below 2**53 for up to 8,192
shards, so a JSON client (JavaScript numbers) reads them exactly.

A MultiSearcher is immutable like a Searcher: a new version of one shard makes a new
MultiSearcher (``with_shard``) that the server swaps in whole, so each request is
answered by one fixed set of shard versions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np

from common.errors import VisearchError
from index.ann.query import MAX_CANDIDATES, MAX_K, Hits, InvalidQueryError, SearchParams
from index.ann.search import Searcher
from index.store.contract import ModelMismatchError, check_same_model
from index.store.manifest import Manifest
from index.store.records import ImageRecord

SHARD_SHIFT = 40  # local ids up to 2**40 (1.1e12) per shard
POOL_PER_SHARD = 8  # concurrent searches per shard across all requests


def merge_key(scores: Sequence[float]) -> list[float]:
    """Each hit's merge key: the lowest score up to it in its shard's ranking.

    A shard's ranking is in score order only within a re-ranking tier (index/ann/tiers.py:
    a deeper tier may start above the end of the last one). Merged by this non-increasing
    key, the union's top n depends only on each shard's top n, so pages of several shards
    concatenate as one index's do; with sorted shard rankings it is the score itself.
    """
    return np.minimum.accumulate(np.asarray(scores, dtype=np.float64)).tolist() \
        if len(scores) else []
LOCAL_MASK = (1 << SHARD_SHIFT) - 1
MAX_SHARDS = 1 << (53 - SHARD_SHIFT)


class ShardModelMismatchError(ModelMismatchError):
    """Shards built with different models cannot answer one query together."""


def global_id(shard: int, local: int) -> int:
    return (shard << SHARD_SHIFT) | local


def split_id(gid: int) -> tuple[int, int]:
    """(shard, local id) of a namespaced id."""
    return gid >> SHARD_SHIFT, gid & LOCAL_MASK


def check_same_models(searchers: Sequence[Searcher], names: Sequence[str]) -> None:
    """Every shard holds vectors of shard 0's model (weights, preprocessing, dimension)."""
    first = searchers[0].manifest.model
    for searcher, name in zip(searchers[1:], names[1:], strict=True):
        model = searcher.manifest.model
        try:
            check_same_model(model, first)
            if model.embed_dim != first.embed_dim:
                raise ModelMismatchError(f"{model.embed_dim}-d vectors vs {first.embed_dim}-d")
        except ModelMismatchError as exc:
            raise ShardModelMismatchError(
                f"shard {name} was built with another model than shard {names[0]} ({exc}); "
                f"all shards served together must share one model") from exc


class MultiSearcher:
    """Searchers of several index directories answering as one (duck-types Searcher for
    the service's plain path: prepare, check_params, search_unit, shown_paths...)."""

    def __init__(self, shards: Sequence[Searcher], names: Sequence[str] | None = None,
                 pool: ThreadPoolExecutor | None = None):
        if not shards:
            raise VisearchError("no index shards to serve")
        if len(shards) > MAX_SHARDS:
            raise VisearchError(f"at most {MAX_SHARDS} shards, not {len(shards)}")
        self.shards = tuple(shards)
        self.names = tuple(names) if names is not None else \
            tuple(str(s.directory.path) for s in shards)
        check_same_models(self.shards, self.names)
        # Shards already search in parallel: one OpenMP thread each (set per thread).
        # Every request thread submits here: room for several queries' shard searches at once.
        self._pool = pool or ThreadPoolExecutor(max_workers=len(shards) * POOL_PER_SHARD,
                                                thread_name_prefix="shard",
                                                initializer=faiss.omp_set_num_threads,
                                                initargs=(1,))
        first = shards[0].manifest
        # The composite version: rises whenever any shard's version does (shards only move
        # forward), so page tokens and responses name one state of all shards.
        self.manifest: Manifest = replace(
            first, version=sum(s.manifest.version for s in shards),
            live_count=sum(s.manifest.live_count for s in shards),
            stored_count=sum(s.manifest.stored_count for s in shards),
            failed_count=sum(s.manifest.failed_count for s in shards))
        self.is_ivf = any(s.is_ivf for s in shards)
        self.root = ""  # each shard shows its paths below its own build root
        self.store = _MultiStore(self)
        self.catalog = _MultiCatalog(self)

    def with_shard(self, i: int, searcher: Searcher) -> MultiSearcher:
        """The same shards with shard ``i`` replaced (a new version of it)."""
        shards = list(self.shards)
        shards[i] = searcher
        return MultiSearcher(shards, self.names, self._pool)

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def ntotal(self) -> int:
        return sum(s.ntotal for s in self.shards)

    def _shard_params(self, shard: Searcher, params: SearchParams) -> SearchParams:
        """nprobe applies to the IVF shards only (a small shard may be exact)."""
        return params if shard.is_ivf else replace(params, nprobe=None)

    def check_params(self, params: SearchParams, max_k: int = MAX_K,
                     max_candidates: int = MAX_CANDIDATES, offset: int = 0) -> None:
        if params.nprobe is not None and not self.is_ivf:
            raise InvalidQueryError(f"nprobe applies to IVF indexes; these shards are "
                                    f"{self.manifest.index.spec}")
        for shard in self.shards:
            shard.check_params(self._shard_params(shard, params), max_k, max_candidates, offset)

    def prepare(self, queries: np.ndarray) -> np.ndarray:
        return self.shards[0].prepare(queries)

    def map(self, fn, items: Iterable) -> list:  # type: ignore[no-untyped-def, type-arg]
        """``fn`` over items, one shard per thread (faiss releases the GIL)."""
        items = list(items)
        if len(items) == 1:
            return [fn(items[0])]
        return list(self._pool.map(fn, items))

    def search_unit(self, q: np.ndarray, params: SearchParams) -> Hits:
        """Each shard's top k with the same parameters, merged: the top k of the union
        (exact when the shards are), ties by namespaced id."""
        parts = self.map(lambda s: s.search_unit(q, self._shard_params(s, params)),
                         self.shards)
        ids = np.concatenate([np.where(h.ids >= 0, h.ids | (i << SHARD_SHIFT), -1)
                              for i, h in enumerate(parts)], axis=1)
        scores = np.concatenate([np.where(h.ids >= 0, h.scores, -np.inf)
                                 for h in parts], axis=1).astype(np.float32)
        keys = np.concatenate([np.minimum.accumulate(np.where(h.ids >= 0, h.scores, -np.inf),
                                                     axis=1) for h in parts], axis=1)
        # Shard, then position within it: ties keep each shard's own order.
        position = np.broadcast_to(np.arange(ids.shape[1]), ids.shape)
        order = np.lexsort((position, -keys), axis=-1)[:, :params.k]
        return Hits(np.take_along_axis(ids, order, axis=1),
                    np.take_along_axis(scores, order, axis=1))

    def search(self, queries: np.ndarray, params: SearchParams = SearchParams()) -> Hits:
        self.check_params(params)
        return self.search_unit(self.prepare(queries), params)

    def by_shard(self, ids: Iterable[int]) -> dict[int, list[int]]:
        """Local ids grouped by shard; ids of no shard are left out."""
        out: dict[int, list[int]] = {}
        for gid in ids:
            shard, local = split_id(int(gid))
            if gid >= 0 and shard < len(self.shards):
                out.setdefault(shard, []).append(local)
        return out

    def paths(self, ids: np.ndarray | list[int]) -> dict[int, str]:
        return self.shown_paths(ids, absolute=True)

    def shown_paths(self, ids: np.ndarray | list[int], absolute: bool = False) -> dict[int, str]:
        out: dict[int, str] = {}
        for shard, local in self.by_shard(np.asarray(ids).reshape(-1).tolist()).items():
            for i, path in self.shards[shard].shown_paths(local, absolute).items():
                out[global_id(shard, i)] = path
        return out

    def held_ids(self) -> np.ndarray:
        return np.concatenate([s.held_ids() | (i << SHARD_SHIFT)
                               for i, s in enumerate(self.shards)])

    def stored_vector_of(self, gid: int) -> tuple[Searcher, int]:
        """The shard and local id of a namespaced id (InvalidQueryError when no shard)."""
        shard, local = split_id(gid)
        if gid < 0 or shard >= len(self.shards):
            raise InvalidQueryError(f"id {gid} names no shard of this server")
        return self.shards[shard], local

    def shard_info(self) -> list[dict[str, object]]:
        return [{"path": name, "index_version": s.manifest.version, "vector_count": s.ntotal,
                 "index_spec": s.manifest.index.spec, "id_base": global_id(i, 0)}
                for i, (s, name) in enumerate(zip(self.shards, self.names, strict=True))]

    def close(self) -> None:
        for shard in self.shards:
            shard.close()


class _MultiStore:
    """Stored raw vectors by namespaced id (collapse and like_id read them)."""

    def __init__(self, owner: MultiSearcher):
        self._owner = owner

    @property
    def count(self) -> int:
        return global_id(len(self._owner.shards), 0)

    def get(self, ids: np.ndarray) -> np.ndarray:
        flat = np.asarray(ids, np.int64).reshape(-1)
        out = np.zeros((len(flat), self._owner.dim), np.float32)
        shards = flat >> SHARD_SHIFT
        for shard in np.unique(shards).tolist():
            rows = np.flatnonzero(shards == shard)
            out[rows] = self._owner.shards[shard].store.get(flat[rows] & LOCAL_MASK)
        return out


class _MultiCatalog:
    """What id- and key-taking features ask the catalog, over every shard."""

    def __init__(self, owner: MultiSearcher):
        self._owner = owner

    def live_record(self, gid: int) -> ImageRecord | None:
        shard, local = split_id(gid)
        if gid < 0 or shard >= len(self._owner.shards):
            return None
        return self._owner.shards[shard].catalog.live_record(local)

    def ids_for_paths(self, paths: Iterable[str]) -> dict[str, int]:
        """Namespaced ids of keys or shown paths; a key found in several shards resolves
        to the first shard's item."""
        from index.rerank.stage import resolve_keys

        wanted = tuple(paths)
        found: dict[str, int] = {}
        for i, shard in enumerate(self._owner.shards):
            for key, local in resolve_keys(shard, wanted).items():
                found.setdefault(key, global_id(i, local))
        return found

    def paths(self, ids: Sequence[int]) -> dict[int, str]:
        return self._owner.paths(list(ids))


def open_shards(paths: Sequence[Path | str]) -> MultiSearcher:
    """The current version of each index directory, as one MultiSearcher."""
    searchers: list[Searcher] = []
    try:
        for path in paths:
            searchers.append(Searcher(path))
        return MultiSearcher(searchers, [str(p) for p in paths])
    except BaseException:
        for s in searchers:
            s.close()
        raise
