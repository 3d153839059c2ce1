"""The live-recall thread's exact search, block by block and from RAM, against a sort."""

from __future__ import annotations

import numpy as np

from server.recall import exact_top_k, k_label
from tests.synthetic import clustered


def test_blockwise_exact_top_k_equals_a_full_sort():
    corpus = clustered(5000, 32, seed=0)
    ids = np.arange(10_000, 15_000)  # ids need not be positions
    queries = clustered(20, 32, seed=4)
    expected = ids[np.argsort(-(queries @ corpus.T), axis=1, kind="stable")[:, :25]]
    blocks = [(ids[i:i + 700], corpus[i:i + 700]) for i in range(0, 5000, 700)]
    assert np.array_equal(exact_top_k(blocks, queries, 25), expected)
    assert np.array_equal(exact_top_k([(ids, corpus)], queries, 25), expected)
    # Fewer vectors than k: all of them, best first.
    assert np.array_equal(exact_top_k([(ids[:3], corpus[:3])], queries[:1], 10)[0],
                          ids[:3][np.argsort(-(corpus[:3] @ queries[0]))])


def test_k_labels_stay_few():
    assert [k_label(k) for k in (1, 10, 100, 101, 1000)] == ["1", "10", "100", "101+", "101+"]
