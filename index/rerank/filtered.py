"""The top k among the images a filter allows, by a strategy chosen from its selectivity.

* few matches (``exact_below``): an exact scan of their stored vectors; exact and, for
  up to about a thousand vectors, faster than any index walk;
* more (under ``selector_below`` of the images, by default every filter that does not
  match everything): faiss searches the matching ids only, through an IDSelectorBitmap
  in SearchParameters; the bitmap, the selector and the parameters are made once per
  filter, index version and nprobe (index/rerank/masks.py), so a query pays only the
  search. Measured, this beats the deeper search at every selectivity;
* "post" (forced, or a filter matching everything): an ordinary search
  ``1.5/selectivity`` times deeper, then the filter; when that finds fewer candidates
  than the ranking needs, the selector search answers instead.

Each returns (id, score) best first, ties by id, at exact (re-ranked) scores where the
index re-ranks. Where it re-ranks, the ranking is the tiered one of index/ann/tiers.py
over the allowed PQ candidates in PQ order: the selector and the deeper search see the
same candidates (same lists probed, same PQ order), and the first n of the ranking do
not depend on the depth asked for, so filtered pages concatenate exactly to the unpaged
filtered ranking. The crossovers are measured in docs/measurements.md.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import faiss
import numpy as np

from index.ann import faiss_index as ann
from index.ann import tiers
from index.ann.params import default_nprobe
from index.ann.query import SearchParams
from index.rerank.masks import Allowed

if TYPE_CHECKING:
    from index.ann.search import Searcher

Ranked = list[tuple[int, float]]
SCAN_CHUNK = 65_536


@dataclass(frozen=True)
class FilterStrategy:
    exact_below: int = 1_000  # matching images scanned exactly at or below this (measured)
    selector_below: float = 1.0  # fraction of images: IDSelector below, deeper search above
    max_depth: int = 20_000  # most ANN candidates a broad filter asks for


DEFAULT_STRATEGY = FilterStrategy()


def choose(matched: int, held: int, strategy: FilterStrategy) -> str:
    if matched <= strategy.exact_below:
        return "exact"
    return "selector" if matched < strategy.selector_below * held else "post"


def top_among(searcher: Searcher, q: np.ndarray, allowed: np.ndarray | Allowed, depth: int,
              params: SearchParams, strategy: FilterStrategy = DEFAULT_STRATEGY,
              force: str | None = None) -> tuple[Ranked, str]:
    """The best ``depth`` allowed ids for the (1, dim) unit query ``q``, and the strategy
    used. ``allowed`` covers ids 0..n-1 and holds only ids this version serves."""
    if isinstance(allowed, np.ndarray):
        allowed = Allowed.of(allowed)
    matched = allowed.count
    if matched == 0:
        return [], "none"
    how = force or choose(matched, searcher.ntotal, strategy)
    if how == "exact":
        return exact_scan(searcher, q, allowed.ids(), depth), how
    if how == "post":
        found = post_filter(searcher, q, allowed, depth, params, matched, strategy)
        if found is not None:
            return found, how
        how = "selector"
    return selector_search(searcher, q, allowed, depth, params), how


def exact_scan(searcher: Searcher, q: np.ndarray, ids: np.ndarray, depth: int) -> Ranked:
    """Exact inner products with the stored vectors of ``ids``, in chunks."""
    best_ids, best_scores = [], []
    for start in range(0, len(ids), SCAN_CHUNK):
        chunk = ids[start:start + SCAN_CHUNK]
        scores = searcher.store.get(chunk).astype(np.float32) @ q[0]
        if len(chunk) > depth:
            keep = np.argpartition(-scores, depth - 1)[:depth]
            chunk, scores = chunk[keep], scores[keep]
        best_ids.append(chunk)
        best_scores.append(scores)
    return _ordered(np.concatenate(best_ids), np.concatenate(best_scores), depth)


def _ordered(ids: np.ndarray, scores: np.ndarray, depth: int) -> Ranked:
    keep = ids >= 0
    ids, scores = ids[keep], scores[keep]
    order = np.lexsort((ids, -scores))[:depth]
    return [(int(i), float(s)) for i, s in zip(ids[order], scores[order], strict=True)]


def selector_search(searcher: Searcher, q: np.ndarray, allowed: Allowed, depth: int,
                    params: SearchParams) -> Ranked:
    refine = searcher.refine_for(params)
    call = _selector_parameters(searcher, allowed, params)
    want = tiers.candidate_depth(depth, refine) if refine > 1 else depth
    if refine > 1:
        with _reading(searcher):
            candidates = searcher.candidates(q, want, refine, None, params=call)
        scores, ids = searcher.rerank(q, candidates, depth, refine)
        return _tiered(ids[0], scores[0])
    with _reading(searcher):
        scores, ids = searcher.index.search(q, want, params=call)
    return _ordered(ids[0], scores[0], depth)


def _tiered(ids: np.ndarray, scores: np.ndarray) -> Ranked:
    """The tiered ranking as it is (not re-sorted: a deeper tier may score higher)."""
    keep = ids >= 0
    return [(int(i), float(s)) for i, s in zip(ids[keep], scores[keep], strict=True)]


def post_filter(searcher: Searcher, q: np.ndarray, allowed: Allowed, depth: int,
                params: SearchParams, matched: int, strategy: FilterStrategy) -> Ranked | None:
    """None when a search ``1/selectivity`` deeper finds fewer allowed candidates than the
    tiered ranking needs (and the probed lists hold more)."""
    refine = searcher.refine_for(params)
    want = tiers.candidate_depth(depth, refine) if refine > 1 else depth
    nprobe = _nprobe(searcher, params, matched / max(searcher.ntotal, 1))
    if refine > 1 and searcher.depth_dependent_scan:
        # Each tier from a search of its own depth, as Searcher.candidates does.
        def search_at(at: int) -> np.ndarray | None:
            found = _allowed_candidates(searcher, q, allowed, at, matched, strategy, nprobe)
            return None if found is None else found[0][None, :]

        candidates = tiers.by_tiers(search_at, want, tiers.FIRST_TIER * refine)
        if candidates is None:
            return None
        exact, ranked = searcher.rerank(q, candidates, depth, refine)
        return _tiered(ranked[0], exact[0])
    found = _allowed_candidates(searcher, q, allowed, want, matched, strategy, nprobe)
    if found is None:
        return None
    ids_ok, scores_ok = found
    if refine > 1:
        exact, ranked = searcher.rerank(q, ids_ok[None, :], depth, refine)
        return _tiered(ranked[0], exact[0])
    return _ordered(ids_ok, scores_ok, depth)


def _allowed_candidates(searcher: Searcher, q: np.ndarray, allowed: Allowed, want: int,
                        matched: int, strategy: FilterStrategy, nprobe: int | None
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """The first ``want`` allowed candidates of one search deep enough to hold them, in PQ
    order with their scores; None where it fell short and the probed lists hold more."""
    ann_depth = min(searcher.ntotal, strategy.max_depth,
                    math.ceil(want * searcher.ntotal / matched * 1.5) + 16)
    if ann_depth < want:
        return None
    with _reading(searcher):
        scores, ids = searcher.index.search(q, ann_depth,
                                            params=ann.search_parameters(searcher.index, nprobe))
    row, mask = ids[0], allowed.mask
    found = row >= 0
    ok = found & mask[np.where(found, row, 0)]
    ids_ok, scores_ok = row[ok], scores[0][ok]
    order = np.lexsort((ids_ok, -scores_ok))[:want]  # PQ order, ties by id
    every_probed = int(found.sum()) < ann_depth  # the probed lists gave all they hold
    if len(order) < want and not every_probed:
        return None  # a selector search sees the allowed candidates a deeper search misses
    return ids_ok[order], scores_ok[order]


def _selector_parameters(searcher: Searcher, allowed: Allowed,
                         params: SearchParams) -> faiss.SearchParameters:
    """Search parameters holding an IDSelectorBitmap over ``allowed``, made once per
    filter, version and nprobe (Allowed.memo keeps them with the bitmap they point at).
    Unless the query sets nprobe, a filter visits 1/sqrt(selectivity) times more lists:
    the probed lists hold that much fewer matching images. The selectivity is the one
    post_filter uses, so both probe the same lists and rank alike."""
    nprobe = _nprobe(searcher, params, allowed.count / max(searcher.ntotal, 1))
    found = allowed.memo.get(nprobe)
    if found is None:
        if len(allowed.memo) >= 16:  # nprobe values a client chose: keep a few
            allowed.memo.clear()
        bitmap = allowed.bitmap()
        selector = faiss.IDSelectorBitmap(len(allowed.mask), faiss.swig_ptr(bitmap))
        found = allowed.memo[nprobe] = (selector, _parameters(searcher, nprobe, selector))
    return found[1]  # type: ignore[index]


def _parameters(searcher: Searcher, nprobe: int | None,
                selector: faiss.IDSelector) -> faiss.SearchParameters:
    inner: faiss.SearchParameters
    if nprobe is not None:
        inner = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)  # type: ignore[call-arg]
    else:
        inner = faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]
    if isinstance(faiss.downcast_index(searcher.index), faiss.IndexPreTransform):
        outer = faiss.SearchParametersPreTransform(index_params=inner)  # type: ignore[call-arg]
        outer.referenced_objects = [inner]  # type: ignore[attr-defined]
        return outer
    return inner


def _nprobe(searcher: Searcher, params: SearchParams, selectivity: float) -> int | None:
    if not searcher.is_ivf:
        return None
    if params.nprobe is not None:
        return params.nprobe
    nlist = ann.ivf_of(searcher.index).nlist
    # A tuned default can be far below the rule's (it was tuned without a filter); a
    # filter needs the lists' coverage the rule gives, widened by its selectivity.
    base = max(searcher.manifest.index.default_nprobe or 1, default_nprobe(nlist))
    widened = base / math.sqrt(max(selectivity, 1e-6))
    return int(min(nlist, math.ceil(widened)))


@contextlib.contextmanager
def _reading(searcher: Searcher) -> Iterator[None]:
    """A live (writable) searcher's read lock; nothing for a published version."""
    lock = getattr(searcher, "lock", None)
    if lock is None:
        yield
    else:
        with lock.reading():
            yield


def held_mask(searcher: Searcher) -> np.ndarray:
    """Which ids 0..store.count-1 this version serves, cached until its index changes."""
    key = (searcher.ntotal, searcher.store.count)
    cached = getattr(searcher, "_held_mask", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    mask = np.zeros(searcher.store.count, bool)
    held = searcher.held_ids()
    mask[held[held < len(mask)]] = True
    searcher._held_mask = (key, mask)  # type: ignore[attr-defined]
    return mask
