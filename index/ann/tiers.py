"""Prefix-stable re-ranking of PQ candidates, so pages concatenate to the unpaged ranking.

Re-ranking the top ``k * refine`` PQ candidates exactly makes the first hits depend on
``k``: a deeper search re-ranks more candidates, and one of them may outrank a hit a
shallower search returned. Then page 1 (k=10) and the first ten of an unpaged k=30
differ. Here the ranking is defined by fixed tiers instead: positions [0, 16) are the
exact top of the first ``16 * refine`` PQ candidates (ties by id), positions [16, 32)
the exact top of the first ``32 * refine`` not already placed, and so on, doubling. The
first ``k`` of that ranking are the same whatever depth a query searched, as long as it
searched at least ``candidate_depth(k)``: a page at offset ``o`` and the unpaged top
``o + k`` agree position by position. Within a tier scores decrease; a deeper tier may
hold a hit scoring above the end of the tier before it (one the shallower candidate
list did not hold), shown after it so that no earlier page changes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FIRST_TIER = 16


def tier_bound(k: int) -> int:
    """The end of the tier holding position ``k - 1``: 16, 32, 64, ..."""
    bound = FIRST_TIER
    while bound < k:
        bound *= 2
    return bound


def candidate_depth(k: int, refine: int) -> int:
    """PQ candidates a top-``k`` search needs so its hits are the ranking's first ``k``."""
    return tier_bound(k) * refine


def pq_order(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Candidates in PQ rank order with equal PQ scores by id, so the first ``n`` of any
    deeper list are the same ``n`` (faiss leaves the order of ties open)."""
    order = np.lexsort((np.where(ids < 0, np.iinfo(np.int64).max, ids), -scores), axis=-1)
    return np.take_along_axis(ids, order, axis=1)


def select(ids: np.ndarray, exact: np.ndarray, k: int, refine: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` of the tiered ranking of each row: ``ids`` are candidates in PQ
    order (-1 for none), ``exact`` their exact scores. Returns (scores, ids), k columns,
    padded with (-inf, -1)."""
    rows, depth = ids.shape
    out_ids = np.full((rows, k), -1, np.int64)
    out_scores = np.full((rows, k), -np.inf, np.float32)
    for r in range(rows):
        valid = ids[r] >= 0
        taken = np.zeros(depth, bool)
        placed, bound = 0, FIRST_TIER
        while placed < k:
            prefix = min(bound * refine, depth)
            open_ = np.flatnonzero(valid[:prefix] & ~taken[:prefix])
            if open_.size:
                best = open_[np.lexsort((ids[r, open_], -exact[r, open_]))]
                chosen = best[:min(bound, k) - placed]
                taken[chosen] = True
                out_ids[r, placed:placed + chosen.size] = ids[r, chosen]
                out_scores[r, placed:placed + chosen.size] = exact[r, chosen]
                placed += chosen.size
            if prefix >= depth:
                break
            bound *= 2
    return out_scores, out_ids


def extend(head: np.ndarray, deeper: np.ndarray, depth: int) -> np.ndarray:
    """``head`` (candidates of a shallower search, kept as they are) followed by the
    candidates of ``deeper`` it lacks, in their order, to ``depth`` columns (-1 padded):
    the prefix stays what the shallower search found."""
    rows = head.shape[0]
    out = np.full((rows, depth), -1, np.int64)
    out[:, :head.shape[1]] = head
    for r in range(rows):
        fresh = deeper[r][(deeper[r] >= 0) & ~np.isin(deeper[r], head[r])]
        take = fresh[:depth - head.shape[1]]
        out[r, head.shape[1]:head.shape[1] + len(take)] = take
    return out


def by_tiers(search_at: Callable[[int], np.ndarray | None], depth: int, first: int
             ) -> np.ndarray | None:
    """Candidates to ``depth`` columns whose first ``first * 2**j`` are those of a search of
    exactly that depth (``search_at(d)``: PQ-ordered candidates, or None when it cannot
    give them), for scans whose top n depends on the depth asked for; None if any tier's
    search gave None."""
    out = search_at(min(first, depth))
    tier = first
    while out is not None and tier < depth:
        tier = min(2 * tier, depth)
        deeper = search_at(tier)
        out = None if deeper is None else extend(out, deeper, tier)
    return out
