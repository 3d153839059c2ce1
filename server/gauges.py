"""More of what /metrics shows: the re-rank and catalog look-up stages of each answered
query, and the one scrape-time collector of facts about the served index, the model's
queue and the process's compute.

Kept beside server.metrics so that module stays the one interceptor and its counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from index.ann.search import Searcher
    from server.query import Query
    from server.service import SearchService


class StageObserver:
    """Puts each answered query's ``rerank`` and ``lookup`` times in the stage histogram
    (in the request thread: two histogram updates, no queue needed)."""

    def __init__(self, stage: Histogram):
        self.rerank = stage.labels("rerank")
        self.lookup = stage.labels("lookup")

    def __call__(self, searcher: Searcher, queries: Sequence[Query], vectors: Sequence[Any],
                 results: Sequence[Any]) -> None:
        for result in results:
            timings = getattr(result, "timings", None)
            if timings is None:
                continue
            if timings.rerank_ms > 0:
                self.rerank.observe(timings.rerank_ms / 1000)
            if timings.lookup_ms > 0:
                self.lookup.observe(timings.lookup_ms / 1000)

    def close(self) -> None:
        pass


class IndexGauges(Collector):
    """Everything /metrics tells about the served version, read at scrape time in one
    place: its number, vectors, load time, deleted count, IVF lists and default nprobe
    (all from one read of the handle, so one scrape never mixes two versions); the
    micro-batcher's queue, the model's device and the thread counts of faiss and torch.

    Registered with the server's metrics (server.metrics.Monitoring) before the index is
    loaded: until then ``service()`` is None and it yields nothing."""

    def __init__(self, service: Callable[[], SearchService | None]):
        self._service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        service = self._service()
        if service is None:
            return
        handle = service.index
        searcher, loaded_at = handle.current, handle.loaded_at
        m = searcher.manifest
        yield GaugeMetricFamily("visearch_index_version", "served index version",
                                value=m.version)
        yield GaugeMetricFamily("visearch_index_vectors", "vectors in the served version",
                                value=searcher.ntotal)
        yield GaugeMetricFamily("visearch_index_loaded_timestamp_seconds",
                                "when the served version was loaded or swapped in",
                                value=datetime.fromisoformat(loaded_at).timestamp())
        if service.model is not None:
            yield GaugeMetricFamily("visearch_embed_queue_depth",
                                    "queries waiting for the next model forward pass",
                                    value=service.model.batcher.depth)
        yield GaugeMetricFamily("visearch_index_deleted",
                                "images deleted from the catalog when the served version "
                                "was published (stored - live)",
                                value=max(0, m.stored_count - m.live_count))
        yield GaugeMetricFamily("visearch_index_nlist", "IVF lists of the served version "
                                "(0: exact index)", value=m.index.nlist or 0)
        yield GaugeMetricFamily("visearch_index_default_nprobe",
                                "lists searched when a query names no nprobe (0: exact)",
                                value=(m.index.default_nprobe or 0) if searcher.is_ivf else 0)
        device = GaugeMetricFamily("visearch_model_device", "where the model runs (1 on the "
                                   "device's label; none: vector-only index)",
                                   labels=["device"])
        device.add_metric([service.model.device if service.model else "none"], 1)
        yield device
        import faiss
        import torch

        from server import app

        rpc = app.rpc_faiss_threads
        yield GaugeMetricFamily("visearch_faiss_threads", "OpenMP threads of a faiss call "
                                "made from a request thread",
                                value=rpc if rpc is not None else faiss.omp_get_max_threads())
        yield GaugeMetricFamily("visearch_torch_threads", "threads of the model's forward pass",
                                value=torch.get_num_threads())
