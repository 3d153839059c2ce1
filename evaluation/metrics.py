"""Retrieval metrics on arrays of ranked ids: ANN fidelity and task quality.

Rankings are taken as returned: ties in score keep the order the index gave
them (faiss returns equal scores in id order), so every metric is a function
of the id lists alone. Padding ids (-1) never count as hits.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np


def k_recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean overlap of the top-k found with the exact top-k, divided by k (k-recall@k)."""
    found, truth = np.asarray(found)[:, :k], np.asarray(truth)[:, :k]
    overlap = sum(len(np.intersect1d(f[f >= 0], t[t >= 0])) for f, t in zip(found, truth,
                                                                           strict=True))
    return overlap / (len(found) * k) if len(found) else 0.0


def one_recall_at_k(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Fraction of queries whose exact nearest neighbour is in the top-k found (1-recall@k)."""
    found, nearest = np.asarray(found)[:, :k], np.asarray(truth)[:, 0]
    return float(np.mean([n in f for f, n in zip(found, nearest, strict=True)])) \
        if len(found) else 0.0


def recall_at_k(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """Share of the relevant items found in the top k."""
    if not relevant:
        raise ValueError("recall is undefined without relevant items")
    return len(set(ranked[:k]) & set(relevant)) / len(relevant)


def precision_at_k(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """Share of the top k that is relevant (k in the denominator, even when fewer are returned)."""
    return len(set(ranked[:k]) & set(relevant)) / k


def reciprocal_rank(ranked: Sequence[int], relevant: Collection[int], k: int | None = None
                    ) -> float:
    """1 / rank of the first relevant item within the top k, else 0."""
    for rank, item in enumerate(ranked[:k] if k else ranked, 1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def average_precision_at_k(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """Mean of precision@i over the ranks i <= k holding a relevant item, divided by
    min(k, |relevant|) so a perfect top-k scores 1 even when more items are relevant."""
    if not relevant:
        raise ValueError("average precision is undefined without relevant items")
    hits, total = 0, 0.0
    for rank, item in enumerate(ranked[:k], 1):
        if item in relevant:
            hits += 1
            total += hits / rank
    return total / min(k, len(relevant))


def ndcg_at_k(ranked: Sequence[int], relevant: Collection[int], k: int) -> float:
    """Binary-relevance nDCG: DCG of the ranking over DCG of an ideal one, both cut at k."""
    if not relevant:
        raise ValueError("nDCG is undefined without relevant items")
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    gains = np.array([item in relevant for item in ranked[:k]], dtype=float)
    dcg = float(np.sum(gains * discounts[:len(gains)]))
    ideal = float(np.sum(discounts[:min(k, len(relevant))]))
    return dcg / ideal


TASK_METRICS = {
    "recall": recall_at_k,
    "precision": precision_at_k,
    "mrr": reciprocal_rank,
    "map": average_precision_at_k,
    "ndcg": ndcg_at_k,
}


def task_metrics(rankings: Sequence[Sequence[int]], relevants: Sequence[Collection[int]],
                 ks: Sequence[int]) -> dict[int, dict[str, float]]:
    """Mean of each metric at each k over queries that have relevant items.

    Queries without any relevant item are left out (recall, AP and nDCG are
    undefined for them); count them with ``evaluable``.
    """
    pairs = [(r, rel) for r, rel in zip(rankings, relevants, strict=True) if rel]
    out: dict[int, dict[str, float]] = {}
    for k in ks:
        out[k] = {name: float(np.mean([fn(r, rel, k) for r, rel in pairs])) if pairs else 0.0
                  for name, fn in TASK_METRICS.items()}
    return out


def evaluable(relevants: Sequence[Collection[int]]) -> int:
    return sum(1 for rel in relevants if rel)
