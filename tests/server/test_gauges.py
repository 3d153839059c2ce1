"""Stage histograms for re-ranking and catalog look-ups, and the index and compute gauges,
scraped from a real server over the untrained tiny model."""

from __future__ import annotations

import threading
import urllib.request

import faiss
import pytest

from index.store.directory import IndexDirectory
from server.client import SearchClient
from server.config import ServerConfig
from tests.server.conftest import serving
from tests.server.test_metrics import moved, scrape


@pytest.fixture(scope="module")
def gauged(index_dir):
    with serving(ServerConfig(index_dir=index_dir, port=0, device="cpu",
                              drain_seconds=0.0, metrics_port=0)) as running:
        yield running


def test_rerank_and_lookup_stages_count_each_answered_query(gauged, corpus):
    before = scrape(gauged)
    with SearchClient(f"127.0.0.1:{gauged.port}", timeout=30) as client:
        dim = client.info()["dim"]
        client.search_image(corpus[0], k=3)
        client.search_vector([0.1] * dim, k=3)
        client.search_vector([0.1] * dim, k=3, min_score=-1.0)  # re-ranked
        client.search_vector([0.1] * dim, k=3, collapse=True)  # re-ranked
    after = scrape(gauged)
    assert moved(before, after, "visearch_stage_seconds_count", stage="lookup") == 4
    assert moved(before, after, "visearch_stage_seconds_count", stage="rerank") == 2
    assert moved(before, after, "visearch_stage_seconds_count", stage="search") == 4


def test_index_and_compute_gauges(gauged, corpus):
    with SearchClient(f"127.0.0.1:{gauged.port}", timeout=30) as client:
        client.info()  # an RPC thread has started
    metrics = scrape(gauged)
    manifest = IndexDirectory(gauged.config.index_dir).manifest()
    assert metrics[("visearch_index_nlist", ())] == (manifest.index.nlist or 0)
    assert metrics[("visearch_index_deleted", ())] == manifest.stored_count - manifest.live_count
    assert metrics[("visearch_model_device", (("device", "cpu"),))] == 1
    # OpenMP's thread count is per thread: a thread it did not start begins at the process
    # default (every core here), so each RPC thread sets its own one thread.
    assert metrics[("visearch_faiss_threads", ())] == 1
    assert metrics[("visearch_torch_threads", ())] >= 1
    # Drift runs by default with metrics; the tiny corpus's profile has no k-means regions.
    assert metrics[("visearch_drift_threshold", ())] == 0.2


def test_rpc_threads_search_with_one_faiss_thread():
    """OpenMP keeps its thread count per thread; an RPC thread must not inherit the process
    default (every core) whatever the loading thread set."""
    from server.app import TrackingExecutor

    default: list[int] = []
    thread = threading.Thread(target=lambda: default.append(faiss.omp_get_max_threads()))
    thread.start()
    thread.join()
    if default[0] == 1:
        pytest.skip("one core: a fresh thread already gets one faiss thread")
    executor = TrackingExecutor(2)
    try:
        assert executor.submit(faiss.omp_get_max_threads).result() == 1
    finally:
        executor.shutdown()


SERVED_FACTS = {"visearch_index_version", "visearch_index_vectors",
                "visearch_index_loaded_timestamp_seconds", "visearch_embed_queue_depth",
                "visearch_index_deleted", "visearch_index_nlist", "visearch_index_default_nprobe",
                "visearch_model_device", "visearch_faiss_threads", "visearch_torch_threads"}


def test_one_collector_reads_the_served_version_and_each_fact_appears_once(gauged):
    """The served version's facts come from one scrape-time collector (one read of the
    handle), and /metrics names each of them exactly once."""
    from server.gauges import IndexGauges

    service = gauged.servicer.service
    assert {family.name for family in IndexGauges(lambda: service).collect()} == SERVED_FACTS
    assert list(IndexGauges(lambda: None).collect()) == []  # before the index is loaded
    assert gauged.metrics_endpoint is not None
    url = f"http://127.0.0.1:{gauged.metrics_endpoint.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        types = [line.split()[2] for line in response.read().decode().splitlines()
                 if line.startswith("# TYPE ")]
    assert sorted(name for name in types if name in SERVED_FACTS) == sorted(SERVED_FACTS)
