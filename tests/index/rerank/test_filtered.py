"""Filtered top-k against exact filtered search, per strategy, on Flat and IVF-PQ.

Synthetic clustered vectors with a synthetic integer column ``bucket`` = id % 1000, so
``bucket < t`` matches t/10 % of the images.
"""

from __future__ import annotations

import numpy as np
import pytest

from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.build.publish import IndexingOptions
from index.build.vector_import import import_vectors
from index.rerank.filtered import FilterStrategy, top_among
from index.rerank.stage import Rerank, allowed_ids, rank
from index.store import metadata
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory
from tests.synthetic import clustered, keys

SELECTIVITY = {"50%": 500, "10%": 100, "1%": 10, "0.1%": 1}


def add_buckets(directory: IndexDirectory, n: int) -> None:
    catalog = directory.catalog()
    metadata.write_fields(catalog, [(i, {"bucket": i % 1000}) for i in range(n)],
                          {"bucket": "integer"})
    catalog.close()


def exact_filtered(searcher: Searcher, q: np.ndarray, allowed: np.ndarray, k: int) -> list[int]:
    ids = np.flatnonzero(allowed)
    scores = searcher.store.get(ids).astype(np.float32) @ q[0]
    return [int(i) for i in ids[np.lexsort((ids, -scores))[:k]]]


@pytest.fixture(scope="module")
def flat_dir(tmp_path_factory):
    directory = IndexDirectory(tmp_path_factory.mktemp("flat") / "idx")
    import_vectors(directory, clustered(5000, 32, seed=3), keys(5000), precomputed_identity(32),
                   IndexingOptions(progress=False))
    add_buckets(directory, 5000)
    return directory


@pytest.fixture(scope="module")
def ivf_buckets(ivf_template, tmp_path_factory):
    import shutil

    path = tmp_path_factory.mktemp("ivfb") / "idx"
    shutil.copytree(ivf_template.path, path)
    directory = IndexDirectory(path)
    add_buckets(directory, 20_000)
    return directory


@pytest.mark.parametrize("how", ["exact", "selector", "post"])
def test_flat_filtered_top_k_is_exact(flat_dir, how):
    searcher = Searcher(flat_dir)
    queries = searcher.prepare(clustered(20, 32, seed=9))
    for name, t in SELECTIVITY.items():
        spec = Rerank(filter=f"bucket < {t}")
        allowed = allowed_ids(searcher, spec)
        assert allowed is not None and allowed.sum() == len(range(0, 5000)) * t // 1000, name
        for q in queries:
            got, used = top_among(searcher, q[None], allowed, 10, SearchParams(k=10),
                                  force=how)
            assert [i for i, _ in got] == exact_filtered(searcher, q[None], allowed, 10), \
                (name, used)
            assert all(allowed[i] for i, _ in got)
    searcher.close()


@pytest.mark.slow
@pytest.mark.parametrize("how", [None, "selector", "post"])
def test_ivf_pq_filtered_recall(ivf_buckets, how):
    """10-recall@10 >= 0.95 at each selectivity at the index's default settings.

    The build tunes those defaults on its own vectors, so the queries are unseen points of
    the same clusters (another seed would draw other clusters, far from every vector)."""
    searcher = Searcher(ivf_buckets)
    queries = searcher.prepare(clustered(20_050, 64)[20_000:])
    for name, t in SELECTIVITY.items():
        spec = Rerank(filter=f"bucket < {t}")
        allowed = allowed_ids(searcher, spec)
        assert allowed is not None
        found = 0
        for q in queries:
            got = rank(searcher, q[None], SearchParams(k=10), spec, FilterStrategy(),
                       force=how)
            assert len(got.hits) == min(10, allowed.sum())
            assert all(allowed[h.id] for h in got.hits)
            truth = exact_filtered(searcher, q[None], allowed, 10)
            found += len({h.id for h in got.hits} & set(truth)) / len(truth)
        assert found / len(queries) >= 0.95, (name, how, found / len(queries))
    searcher.close()
