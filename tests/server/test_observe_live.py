"""Live recall and query drift on a real server on 127.0.0.1 over the synthetic
20k x 64 IVF-PQ index (tests/conftest.py ivf_template), with /metrics scraped."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.fidelity import exact_neighbours
from evaluation.metrics import k_recall_at_k
from index.ann.query import SearchParams
from index.ann.search import Searcher
from server.app import SearchServer
from server.client import SearchClient, vector_request
from server.config import ServerConfig
from tests.server.conftest import serving
from tests.server.test_metrics import scrape
from tests.synthetic import clustered

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def watched(ivf_template):
    with serving(ServerConfig(index_dir=ivf_template.path, port=0, device="cpu",
                              drain_seconds=0.0, metrics_port=0,
                              recall_sample=1.0, recall_per_second=10_000,
                              drift_window=300)) as running:
        yield running


def settle(server: SearchServer) -> None:
    for observer in server.monitoring.observers:
        if hasattr(observer, "worker"):  # the stage observer works in the request thread
            observer.worker.join()


def ask(server: SearchServer, queries: np.ndarray, **params: int) -> np.ndarray:
    with SearchClient(f"127.0.0.1:{server.port}", timeout=60) as client:
        results = client.search_batch([vector_request(q, **params) for q in queries])
    k = params["k"]  # an nprobe of 1 may find fewer than k: pad as faiss does
    return np.array([[hit.id for hit in r.hits] + [-1] * (k - len(r.hits)) for r in results])


def test_live_recall_reads_low_with_tiny_nprobe_and_matches_offline_eval(watched,
                                                               ivf_template):
    queries = clustered(21_000, 64, seed=0)[20_000:20_200]  # fresh points, corpus clusters
    low = ask(watched, queries, k=10, nprobe=1, refine_factor=1)
    high = ask(watched, queries, k=20, nprobe=512, refine_factor=16)
    settle(watched)
    metrics = scrape(watched)

    searcher = Searcher(ivf_template)
    truth = exact_neighbours(searcher.store, searcher.held_ids(), queries, 20)
    offline_low = k_recall_at_k(low, truth, 10)
    assert metrics[("visearch_live_recall_samples_total", (("k", "10"),))] == 200
    # Every query was sampled: the gauge is the offline k-recall@k of the same answers.
    assert metrics[("visearch_live_recall_at_k", (("k", "10"),))] == pytest.approx(
        offline_low, abs=1e-9)
    assert offline_low < 0.6
    offline_high = k_recall_at_k(high, truth, 20)
    assert metrics[("visearch_live_recall_at_k", (("k", "20"),))] == pytest.approx(
        offline_high, abs=1e-9)
    assert offline_high > 0.95
    # And the answers are what the index gives offline with the same parameters.
    offline = searcher.search(queries, SearchParams(k=10, nprobe=1, refine_factor=1))
    assert np.array_equal(offline.ids, low)


def test_drift_gauges_near_zero_for_corpus_like_queries_and_high_for_shifted(watched):
    like_corpus = clustered(22_000, 64, seed=0)[21_000:21_300]
    ask(watched, like_corpus, k=5)
    settle(watched)
    same = scrape(watched)
    assert same[("visearch_drift_window_queries", ())] == 300
    for statistic in ("regions", "projections", "top1_score"):
        assert same[("visearch_drift_psi", (("statistic", statistic),))] < 0.1, statistic

    ask(watched, clustered(300, 64, seed=11), k=5)  # clusters the corpus does not have
    settle(watched)
    shifted = scrape(watched)
    assert shifted[("visearch_drift_psi", (("statistic", "top1_score"),))] > 0.2
    assert shifted[("visearch_drift_top1_median", ())] < \
        shifted[("visearch_drift_reference_top1_median", ())] - 0.2
