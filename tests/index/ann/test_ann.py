"""IVF-PQ indexes on synthetic vectors, checked against exact search."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from index.ann import faiss_index as ann
from index.ann.params import IndexOverrides
from index.ann.query import InvalidQueryError, SearchParams
from index.ann.search import Searcher
from index.build.publish import IndexingOptions
from index.build.vector_import import import_vectors
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory
from tests.conftest import IVF_DIM, IVF_N
from tests.synthetic import clustered, keys

N, DIM = IVF_N, IVF_DIM


@pytest.fixture()
def ivf_dir(ivf_template):
    return ivf_template


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    return index.search(queries, k)[1]


def test_automatic_ivf_pq_above_the_flat_threshold(ivf_dir):
    searcher = Searcher(ivf_dir)
    settings = searcher.manifest.index
    assert settings.auto and not settings.exact
    assert settings.spec == f"IVF{settings.nlist},SQ8" and settings.nlist == 512
    assert searcher.ntotal == N and searcher.is_ivf


def test_recall_rises_with_nprobe_and_refine_lifts_recall_at_1(ivf_dir):
    searcher = Searcher(ivf_dir)
    vectors = searcher.store.get(np.arange(N))
    queries = clustered(300, DIM, seed=7)
    truth = exact_top(vectors, queries, 10)
    recalls = []
    for nprobe in (1, 4, 16, 64):
        hits = searcher.search(queries, SearchParams(k=10, nprobe=nprobe, refine_factor=1))
        overlap = [len(set(h) & set(t)) / 10 for h, t in zip(hits.ids, truth, strict=True)]
        recalls.append(np.mean(overlap))
    assert recalls == sorted(recalls) and recalls[-1] > recalls[0] + 0.1
    plain = searcher.search(queries, SearchParams(k=1, nprobe=64, refine_factor=1))
    refined = searcher.search(queries, SearchParams(k=1, nprobe=64, refine_factor=8))
    top1 = truth[:, 0]
    assert np.mean(refined.ids[:, 0] == top1) > np.mean(plain.ids[:, 0] == top1)
    assert np.mean(refined.ids[:, 0] == top1) > 0.9
    # re-ranked scores are exact inner products with the stored vectors
    np.testing.assert_allclose(refined.scores[:, 0],
                               np.sum(vectors[refined.ids[:, 0]] * queries, axis=1), atol=1e-5)


def test_per_call_nprobe_does_not_touch_the_shared_index(ivf_dir):
    searcher = Searcher(ivf_dir)
    before = ann.ivf_of(searcher.index).nprobe
    searcher.search(clustered(5, DIM, seed=3), SearchParams(k=5, nprobe=77))
    assert ann.ivf_of(searcher.index).nprobe == before


def test_incremental_add_reuses_the_trained_index(ivf_copy):
    ivf_dir = ivf_copy
    first = Searcher(ivf_dir).manifest
    result = import_vectors(ivf_dir, clustered(500, DIM, seed=11), keys(500, start=N),
                            precomputed_identity(DIM), IndexingOptions(progress=False))
    assert not result.retrained and result.manifest.index.spec == first.index.spec
    searcher = Searcher(ivf_dir)
    assert searcher.ntotal == N + 500 and searcher.manifest.version == first.version + 1
    new = searcher.store.get(np.arange(N, N + 20))
    hits = searcher.search(new, SearchParams(k=1, nprobe=64, refine_factor=8))
    np.testing.assert_array_equal(hits.ids[:, 0], np.arange(N, N + 20))


def test_bad_queries_are_rejected(ivf_dir):
    searcher = Searcher(ivf_dir)
    good = clustered(1, DIM)
    for query, params, message in [
        (good[:, :10], SearchParams(), "dimensions"),
        (np.full((1, DIM), np.nan), SearchParams(), "NaN"),
        (np.zeros((1, DIM)), SearchParams(), "zeros"),
        (good, SearchParams(k=0), "k must"),
        (good, SearchParams(k=100_000), "k must"),
        (good, SearchParams(nprobe=0), "nprobe"),
    ]:
        with pytest.raises(InvalidQueryError, match=message):
            searcher.search(query, params)


def test_flat_index_is_exact_and_rejects_nprobe(tmp_path):
    directory = IndexDirectory(tmp_path / "flat")
    vectors = clustered(2000, DIM, seed=5)
    import_vectors(directory, vectors, keys(2000), precomputed_identity(DIM),
                   IndexingOptions(progress=False))
    searcher = Searcher(directory)
    queries = clustered(50, DIM, seed=9)
    hits = searcher.search(queries, SearchParams(k=10))
    np.testing.assert_array_equal(hits.ids, exact_top(searcher.store.get(np.arange(2000)),
                                                      queries, 10))
    with pytest.raises(InvalidQueryError, match="nprobe"):
        searcher.search(queries, SearchParams(nprobe=4))


def test_user_spec_survives_incremental_builds(tmp_path):
    directory = IndexDirectory(tmp_path / "pca")
    spec = "PCAR32,IVF64,SQ8"  # a pre-transform: per-call nprobe must reach the IVF inside
    options = IndexingOptions(progress=False, overrides=IndexOverrides(spec=spec))
    import_vectors(directory, clustered(12_000, DIM), keys(12_000), precomputed_identity(DIM),
                   options)
    import_vectors(directory, clustered(100, DIM, seed=2), keys(100, start=12_000),
                   precomputed_identity(DIM), IndexingOptions(progress=False))
    searcher = Searcher(directory)
    assert searcher.manifest.index.spec == spec and searcher.ntotal == 12_100
    queries = searcher.store.get(np.arange(12_000, 12_100))
    scanned = {}
    for nprobe in (1, 64):
        faiss.cvar.indexIVF_stats.reset()
        hits = searcher.search(queries, SearchParams(k=1, nprobe=nprobe))
        scanned[nprobe] = faiss.cvar.indexIVF_stats.ndis
    assert scanned[64] > 10 * scanned[1]  # nprobe reached the IVF inside the transform
    assert np.mean(hits.ids[:, 0] == np.arange(12_000, 12_100)) > 0.9


@pytest.mark.gpu
def test_gpu_build_matches_cpu_recall(tmp_path):
    if ann.gpu_count() == 0:
        pytest.skip("this faiss build has no GPU support")
    vectors = clustered(N, DIM)
    results = {}
    for name, use_gpu in (("cpu", False), ("gpu", True)):
        directory = IndexDirectory(tmp_path / name)
        result = import_vectors(directory, vectors, keys(N), precomputed_identity(DIM),
                                IndexingOptions(progress=False, use_gpu=use_gpu))
        assert result.faiss_device == name
        results[name] = Searcher(directory).search(vectors[:200], SearchParams(k=1, nprobe=16))
    for hits in results.values():
        assert np.mean(hits.ids[:, 0] == np.arange(200)) > 0.9


@pytest.mark.gpu
def test_rabitq_codes_train_their_coarse_lists_on_the_gpu(tmp_path, caplog):
    """faiss's GPU has no RaBitQ index: the build keeps the codes on the CPU and runs only
    the coarse k-means there, and the index is as good as a CPU-trained one."""
    if ann.gpu_count() == 0:
        pytest.skip("this faiss build has no GPU support")
    vectors = clustered(N, DIM)
    overrides = IndexOverrides(spec="IVF256,RaBitQ2")
    for name, use_gpu in (("cpu", False), ("gpu", True)):
        directory = IndexDirectory(tmp_path / name)
        with caplog.at_level("WARNING", logger="visearch.index"):
            import_vectors(directory, vectors, keys(N), precomputed_identity(DIM),
                           IndexingOptions(progress=False, use_gpu=use_gpu,
                                           overrides=overrides))
        hits = Searcher(directory).search(vectors[:200], SearchParams(k=1, nprobe=16))
        assert np.mean(hits.ids[:, 0] == np.arange(200)) > 0.9
    assert "coarse k-means runs on the GPU" in caplog.text
