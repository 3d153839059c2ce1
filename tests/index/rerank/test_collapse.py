"""Collapse counts: a kept hit stands for every near copy the query may return, also those
its own candidates did not reach (a range search around the kept hit's stored vector)."""

from __future__ import annotations

import numpy as np
import pytest

from index.ann.params import RABITQ_CODES, IndexOverrides
from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.build.publish import IndexingOptions
from index.build.vector_import import import_vectors
from index.rerank.stage import Rerank, rank
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory
from tests.synthetic import clustered, keys

DIM = 16


@pytest.fixture(scope="module", params=[None, f"IVF4,{RABITQ_CODES}"])
def copies(tmp_path_factory, request):
    """300 vectors; ids 300..311 are near copies of id 0 (cosine >= 0.98 with it). In an
    exact index, and in RaBitQ codes, whose range search runs on estimated scores."""
    base = clustered(300, DIM, seed=3)
    rng = np.random.default_rng(4)
    unit = base[0] / np.linalg.norm(base[0])
    near = unit + rng.normal(0, 0.03, (12, DIM)).astype(np.float32)
    directory = IndexDirectory(tmp_path_factory.mktemp("copies") / "idx")
    overrides = IndexOverrides(spec=request.param) if request.param else IndexOverrides()
    import_vectors(directory, np.vstack([base, near]).astype(np.float32), keys(312),
                   precomputed_identity(DIM),
                   IndexingOptions(overrides=overrides, progress=False))
    searcher = Searcher(directory)
    sims = searcher.prepare(near) @ unit
    assert sims.min() >= 0.98
    return searcher, unit


def test_counts_cover_near_copies_beyond_the_searched_candidates(copies):
    searcher, unit = copies
    q = searcher.prepare(unit)
    ranked = rank(searcher, q, SearchParams(k=1), Rerank(collapse=0.97))
    (hit,) = ranked.hits
    assert sorted([hit.id, *hit.collapsed_ids]) == [0, *range(300, 312)]
    scores = searcher.prepare(searcher.store.get(np.array(hit.collapsed_ids))) @ q[0]
    assert list(scores) == sorted(scores, reverse=True)  # best first
    # Only what the query may return: exclusions, filters and min_score apply.
    spec = Rerank(collapse=0.97, exclude_ids=(305, 306))
    (hit,) = rank(searcher, q, SearchParams(k=1), spec).hits
    assert {305, 306}.isdisjoint(hit.collapsed_ids) and len(hit.collapsed_ids) == 10
    cut = float(np.sort(scores)[6])
    (hit,) = rank(searcher, q, SearchParams(k=1), Rerank(collapse=0.97, min_score=cut)).hits
    assert hit.id == 0 and len(hit.collapsed_ids) == int((scores >= cut).sum()) == 6


def test_counts_do_not_change_with_the_page(copies):
    searcher, unit = copies
    q = searcher.prepare(unit)
    first = rank(searcher, q, SearchParams(k=3), Rerank(collapse=0.97)).hits
    later = rank(searcher, q, SearchParams(k=3), Rerank(collapse=0.97, offset=3)).hits
    whole = rank(searcher, q, SearchParams(k=6), Rerank(collapse=0.97)).hits
    assert [(h.id, h.collapsed_ids) for h in first + later] == \
        [(h.id, h.collapsed_ids) for h in whole]
    shown = {h.id for h in whole}
    members = [m for h in whole for m in h.collapsed_ids]
    assert len(members) == len(set(members)) and not shown & set(members)
