"""Near-duplicate collapse: of hits whose stored vectors are nearly the same, only the
best-ranked is shown, standing for the others.

Greedy over the ranked list: a hit whose cosine with an already kept hit reaches the
threshold joins the best-ranked such kept hit's group (the first, not the most similar,
so a hit's group does not change when a later page adds groups). Raw stored vectors
decide, not the (PQ) scores, so exact copies and near copies collapse alike.

What ``members`` counts: every image the query may return (live, allowed by the filter
and exclusions, at or above ``min_score``) whose stored vector is within the threshold of
the kept hit and not of a better-ranked kept hit, found (1) among the searched
candidates and (2) by a range search around the kept hit's own stored vector over the
whole index (``near_copies``): exact on a Flat index; on IVF-PQ over the lists
``nprobe`` visits, with a PQ radius loosened by ``PQ_SLACK`` and every find checked
against the stored raw vectors. So the count covers near copies the query's own top
candidates did not reach, at the cost of one range search per kept hit.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from index.ann.search import Searcher

DEFAULT_THRESHOLD = 0.97
PQ_SLACK = 0.1  # PQ inner products of unit vectors err by a few hundredths


@dataclass
class Group:
    id: int
    score: float
    members: list[int] = field(default_factory=list)  # ids it stands for, best first


def _unit(searcher: Searcher, ids: np.ndarray) -> np.ndarray:
    vectors = searcher.store.get(ids).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors


def collapse(searcher: Searcher, ranked: list[tuple[int, float]], threshold: float,
             wanted: int) -> list[Group]:
    """At most ``wanted`` groups in rank order; every hit of ``ranked`` past the last new
    group is still checked for membership, so counts cover the whole list."""
    if not ranked:
        return []
    vectors = _unit(searcher, np.array([i for i, _ in ranked], np.int64))
    groups: list[Group] = []
    leaders: list[int] = []  # row of each group's leader in ``vectors``
    for row, (vid, score) in enumerate(ranked):
        if leaders:
            near = np.flatnonzero(vectors[leaders] @ vectors[row] >= threshold)
            if near.size:
                groups[int(near[0])].members.append(vid)
                continue
        if len(groups) == wanted:
            continue  # a new group past the page: only members of kept groups matter
        groups.append(Group(vid, score))
        leaders.append(row)
    return groups


def near_copies(searcher: Searcher, groups: list[Group], threshold: float, q: np.ndarray,
                may_return: Callable[[np.ndarray], np.ndarray], min_score: float | None,
                reading: Callable[[], AbstractContextManager[None]]) -> None:
    """Add to each group the near copies of its leader anywhere in the index (see the
    module docstring), best query score first; ``may_return`` masks ids the query allows."""
    if not groups:
        return
    from index.ann import faiss_index as ann

    leader_ids = np.array([g.id for g in groups], np.int64)
    leaders = _unit(searcher, leader_ids)
    nprobe = searcher.manifest.index.default_nprobe if searcher.is_ivf else None
    radius = threshold if searcher.manifest.index.exact else threshold - PQ_SLACK
    with reading():
        params = ann.search_parameters(searcher.index, nprobe)
        _, _, found = searcher.index.range_search(leaders, float(radius), params=params) \
            if params is not None else searcher.index.range_search(leaders, float(radius))
    seen = set(leader_ids.tolist()) | {m for g in groups for m in g.members}
    extra = np.setdiff1d(np.unique(found[found >= 0]), np.fromiter(seen, np.int64))
    extra = extra[may_return(extra)]
    if not extra.size:
        return
    vectors = _unit(searcher, extra)
    sims = leaders @ vectors.T  # (groups, extra)
    scores = vectors @ q.reshape(-1)
    close = sims >= threshold
    keep = close.any(axis=0)
    if min_score is not None:
        keep &= scores >= min_score
    owner = np.argmax(close, axis=0)  # the best-ranked kept hit it is near
    for g, group in enumerate(groups):
        mine = np.flatnonzero(keep & (owner == g))
        if mine.size:
            pairs = {int(i): float(s) for i, s in zip(extra[mine], scores[mine], strict=True)}
            ordered = sorted(pairs.items(), key=lambda p: (-p[1], p[0]))
            group.members = _merge(group.members, ordered, searcher, q)


def _merge(members: list[int], more: list[tuple[int, float]], searcher: Searcher,
           q: np.ndarray) -> list[int]:
    """Candidate members and range finds in one best-first list."""
    if members:
        scores = _unit(searcher, np.array(members, np.int64)) @ q.reshape(-1)
        more = more + [(int(i), float(s)) for i, s in zip(members, scores, strict=True)]
    return [i for i, _ in sorted(more, key=lambda p: (-p[1], p[0]))]
