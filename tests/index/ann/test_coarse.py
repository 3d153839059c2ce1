"""An HNSW coarse quantizer (--index-spec IVFn_HNSW32,...): two-level spherical k-means
and a search breadth that survives the index file."""

from __future__ import annotations

import faiss
import numpy as np

from index.ann import coarse
from index.ann import faiss_index as ann
from index.ann.params import IndexOverrides, choose_settings
from tests.synthetic import clustered


def exact_top(base: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    return np.argsort(-(queries @ base.T), axis=1)[:, :k]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth,
                                                                          strict=True)]))


def test_two_level_centroids_are_nlist_unit_vectors_and_deterministic():
    sample = clustered(6000, 32, clusters=40)
    first = coarse.two_level_centroids(sample, 64)
    assert first.shape == (64, 32)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(first, coarse.two_level_centroids(sample, 64))
    # every list gets vectors: the shares follow the groups' sizes, no centroid is stranded
    assigned = np.argmax(sample @ first.T, axis=1)
    assert len(np.unique(assigned)) == 64


def test_an_hnsw_coarse_index_is_trained_two_level_and_keeps_its_breadth(tmp_path):
    both = clustered(8200, 32, clusters=60)
    base, queries = both[:8000], both[8000:]
    settings = choose_settings(len(base), 32, IndexOverrides(spec="IVF64_HNSW32,SQ8"))
    assert settings.train_size == len(base) and settings.refine_factor > 1
    index = ann.new_index(settings, 32)
    ann.train(index, base[:4000])
    index.add_with_ids(base, np.arange(len(base), dtype=np.int64))
    ivf = ann.ivf_of(index)
    hnsw = coarse.hnsw_of(ivf)
    assert hnsw is not None and ivf.quantizer.ntotal == 64
    assert hnsw.efSearch == coarse.QUANTIZER_EF  # faiss's default 16 misfiles vectors
    faiss.write_index(index, str(tmp_path / "index.faiss"))
    again = ann.read_index(tmp_path / "index.faiss")
    assert coarse.hnsw_of(ann.ivf_of(again)).efSearch == coarse.QUANTIZER_EF
    _, found = again.search(queries, 10, params=ann.search_parameters(again, 64))
    truth = exact_top(base, queries)
    assert recall(found, truth) >= 0.95  # all lists: SQ8's own loss only
    _, one = again.search(queries, 10, params=ann.search_parameters(again, 1))
    assert recall(one, truth) < recall(found, truth)  # nprobe does select lists
