"""Each metric against values worked out by hand, and recall against faiss's own measure."""

from __future__ import annotations

import math

import numpy as np
import pytest
from faiss.contrib.evaluation import knn_intersection_measure

from evaluation.metrics import (
    average_precision_at_k,
    evaluable,
    k_recall_at_k,
    ndcg_at_k,
    one_recall_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank,
    task_metrics,
)


def test_k_recall_agrees_with_faiss_intersection_measure():
    rng = np.random.default_rng(0)
    truth = np.array([rng.permutation(1000)[:10] for _ in range(200)])
    found = truth.copy()
    swap = rng.random(found.shape) < 0.3
    found[swap] = rng.integers(1000, 2000, swap.sum())  # misses
    for k in (1, 5, 10):
        assert k_recall_at_k(found, truth, k) == pytest.approx(
            knn_intersection_measure(found[:, :k], truth[:, :k]))


def test_recall_by_hand():
    truth = np.array([[1, 2, 3], [4, 5, 6]])
    found = np.array([[3, 9, 1], [7, 8, 4]])
    assert k_recall_at_k(found, truth, 3) == pytest.approx(3 / 6)
    assert k_recall_at_k(found, truth, 1) == 0.0
    assert one_recall_at_k(found, truth, 1) == 0.0  # 1 and 4 are not first
    assert one_recall_at_k(found, truth, 3) == 1.0
    padded = np.array([[1, -1, -1], [4, 5, -1]])
    assert k_recall_at_k(padded, np.array([[1, -1, 2], [4, 5, 6]]), 3) == pytest.approx(3 / 6)


# ranking 10, 11, 12, 13, 14 with relevant items {11, 13, 20}
RANKED = [10, 11, 12, 13, 14]
RELEVANT = {11, 13, 20}


def test_task_metrics_by_hand():
    assert recall_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)
    assert recall_at_k(RANKED, RELEVANT, 1) == 0.0
    assert precision_at_k(RANKED, RELEVANT, 4) == pytest.approx(2 / 4)
    assert reciprocal_rank(RANKED, RELEVANT) == pytest.approx(1 / 2)
    assert reciprocal_rank(RANKED, RELEVANT, k=1) == 0.0
    # AP@5: (1/2 + 2/4) / min(5, 3)
    assert average_precision_at_k(RANKED, RELEVANT, 5) == pytest.approx((0.5 + 0.5) / 3)
    # nDCG@5: (1/log2(3) + 1/log2(5)) / (1 + 1/log2(3) + 1/log2(4))
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(dcg / ideal)


def test_fewer_relevant_than_k():
    ranked, relevant = [5, 6, 7, 8], {5}
    assert average_precision_at_k(ranked, relevant, 4) == 1.0  # divided by min(k, |rel|) = 1
    assert ndcg_at_k(ranked, relevant, 4) == 1.0
    assert precision_at_k(ranked, relevant, 4) == 0.25
    assert recall_at_k(ranked, relevant, 4) == 1.0


def test_fewer_results_than_k():
    assert precision_at_k([1], {1, 2}, 5) == pytest.approx(1 / 5)
    assert ndcg_at_k([2], {1, 2}, 3) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_ties_keep_the_returned_order():
    # items 2 and 3 tie in score; the index returned 3 first: the metrics use that order
    assert reciprocal_rank([3, 2], {2}) == 0.5
    assert average_precision_at_k([3, 2], {2}, 2) == 0.5


def test_queries_without_relevant_items_are_left_out():
    rankings = [[1, 2], [3, 4]]
    relevants = [{2}, set()]
    assert evaluable(relevants) == 1
    metrics = task_metrics(rankings, relevants, [1, 2])
    assert metrics[2] == {"recall": 1.0, "precision": 0.5, "mrr": 0.5, "map": 0.5,
                          "ndcg": pytest.approx(1 / math.log2(3))}
    assert metrics[1]["recall"] == 0.0
    with pytest.raises(ValueError):
        recall_at_k([1], set(), 1)
