"""Near-duplicate collapse: of hits whose stored vectors are nearly the same, only the
best-ranked is shown, standing for the others.

Greedy over the ranked list: a hit whose cosine with an already kept hit reaches the
threshold joins that hit's group. Raw stored vectors decide, not the (PQ) scores, so
exact copies and near copies (recompressed, resized) collapse alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from index.ann.search import Searcher

DEFAULT_THRESHOLD = 0.97


@dataclass
class Group:
    id: int
    score: float
    members: list[int] = field(default_factory=list)  # ids it stands for, best first


def collapse(searcher: Searcher, ranked: list[tuple[int, float]], threshold: float,
             wanted: int) -> list[Group]:
    """At most ``wanted`` groups in rank order; every hit of ``ranked`` past the last new
    group is still checked for membership, so counts cover the whole list."""
    if not ranked:
        return []
    ids = np.array([i for i, _ in ranked], np.int64)
    vectors = searcher.store.get(ids).astype(np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    groups: list[Group] = []
    leaders: list[int] = []  # row of each group's leader in ``vectors``
    for row, (vid, score) in enumerate(ranked):
        if leaders:
            sims = vectors[leaders] @ vectors[row]
            best = int(np.argmax(sims))
            if sims[best] >= threshold:
                groups[best].members.append(vid)
                continue
        if len(groups) == wanted:
            continue  # a new group past the page: only members of kept groups matter
        groups.append(Group(vid, score))
        leaders.append(row)
    return groups
