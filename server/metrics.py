"""Prometheus metrics: counters fed by the call path, and a collector, on a registry of our own.

Everything a request does is measured where it passes anyway: the server's one
interceptor (server.callpath) sees
each unary call's method, status code and duration, and reads the per-stage
Timings the service already puts in every SearchResponse (so the stages are
recorded in one place and the service stays free of metrics code). State that
only exists between requests (index version, queue depth) is read at scrape time
by ``server.gauges.IndexGauges``. Labels are method names and status codes only: no paths,
keys or query text, so the number of series stays small and fixed.

Each server has its own ``CollectorRegistry`` (several servers in one test process
must not share counters); ``visearch serve --metrics-port`` serves it over HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from visearch.v1 import search_pb2

from common.errors import VisearchError
from server.feedback.stats import ClickCollector
from server.gauges import IndexGauges

if TYPE_CHECKING:
    from server.config import ServerConfig
    from server.feedback.api import FeedbackRecorder
    from server.service import SearchService

# Seconds; fine between 1 and 50 ms, where a served query lives, coarse beyond.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03,
                   0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
STAGES = ("decode", "embed", "search", "total")


@dataclass(frozen=True)
class OverloadProbe:
    """Predicts gRPC's own admission refusal (``maximum_concurrent_rpcs``), which happens
    after interceptors run but never reaches the handler: ``busy()`` is the number of
    calls the thread pool holds, ``limit`` what the server admits."""

    busy: Callable[[], int]
    limit: int


class ServerMetrics:
    """The counters and histograms of one server."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("visearch_requests", "gRPC calls answered, by method and code",
                                ["method", "code"], registry=r)
        self.latency = Histogram("visearch_request_seconds",
                                 "time from handler start to answer, by method and code",
                                 ["method", "code"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage = Histogram("visearch_stage_seconds",
                               "per answered query: decode, embed (incl. the wait for the "
                               "micro-batch), search (lookup and, for re-ranked queries, "
                               "rerank are parts of it), and the service total",
                               ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("visearch_in_flight_requests", "calls being handled now",
                               registry=r)
        self.rejected = Counter("visearch_rejected_overload",
                                "calls refused with RESOURCE_EXHAUSTED: queue (thread pool "
                                "and queue full) or busy (decode budget)", ["reason"],
                                registry=r)
        for reason in ("busy", "queue"):  # present at 0, so rate() and alerts see them
            self.rejected.labels(reason)
        self.batch_size = Histogram("visearch_embed_batch_size",
                                    "queries per model forward pass (micro-batch)",
                                    buckets=BATCH_BUCKETS, registry=r)
        ProcessCollector(registry=r)
        # Labelled children looked up once: ``labels()`` costs a lock and a dict per call,
        # most of what a call's metrics cost (7 us of 9 when measured).
        self._calls: dict[tuple[str, grpc.StatusCode], tuple[Any, Any]] = {}
        self._stages = [self.stage.labels(name) for name in STAGES]

    def observe_call(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        children = self._calls.get((method, code))
        if children is None:
            children = self._calls[(method, code)] = (self.requests.labels(method, code.name),
                                                      self.latency.labels(method, code.name))
        children[0].inc()
        children[1].observe(seconds)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            self.rejected.labels("busy").inc()

    def observe_response(self, response: Any) -> None:
        """Stage timings carried by a SearchResponse or each answer of a batch."""
        if isinstance(response, search_pb2.SearchResponse):
            self._observe_timings(response.timings)
        elif isinstance(response, search_pb2.SearchBatchResponse):
            for result in response.results:
                if result.HasField("response"):
                    self._observe_timings(result.response.timings)

    def _observe_timings(self, t: search_pb2.Timings) -> None:
        for child, ms in zip(self._stages, (t.decode_ms, t.embed_ms, t.search_ms, t.total_ms),
                             strict=True):
            if ms > 0:  # a stage the query skipped (vector queries: decode, embed) is absent
                child.observe(ms / 1000)


def short_method(full: str) -> str:
    """'/visearch.v1.VisualSearch/Search' -> 'VisualSearch/Search'."""
    service, _, method = full.rpartition("/")
    return f"{service.rpartition('.')[2]}/{method}"


class FeedbackLogCollector(Collector):
    """Entries the feedback log wrote, and those dropped because its queue was full."""

    def __init__(self, recorder: FeedbackRecorder):
        self.log = recorder.log

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("visearch_feedback_log_written", "entries appended",
                                  value=self.log.written)
        yield CounterMetricFamily("visearch_feedback_log_dropped",
                                  "entries dropped: the log's queue was full",
                                  value=self.log.dropped)


class MetricsPortError(VisearchError):
    """The metrics port is taken or not allowed."""


class MetricsEndpoint:
    """``/metrics`` over plain HTTP in a daemon thread (prometheus_client's own server)."""

    def __init__(self, metrics: ServerMetrics, host: str, port: int):
        try:
            self._httpd, self._thread = start_http_server(port, addr=host.strip("[]"),
                                                          registry=metrics.registry)
        except OSError as exc:
            raise MetricsPortError(f"cannot serve metrics on {host}:{port}: {exc.strerror}; "
                                   "pick another --metrics-port") from exc
        self.port = int(self._httpd.server_address[1])

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)



log = logging.getLogger("visearch.server")


@dataclass
class Monitoring:
    """What server.app needs: the metrics for the call path, the endpoint, the model hook.
    With no metrics port, all of it is absent and a call costs nothing extra."""

    metrics: ServerMetrics | None = None
    port: int | None = None
    overload: OverloadProbe | None = None
    config: ServerConfig | None = None
    observers: list[Any] = field(default_factory=list)  # drift, live recall: closed at stop

    @classmethod
    def for_server(cls, config: ServerConfig, service: Callable[[], SearchService | None],
                   busy: Callable[[], int]) -> Monitoring:
        if config.metrics_port is None:
            return cls()
        metrics = ServerMetrics()
        metrics.registry.register(IndexGauges(service))
        return cls(metrics, config.metrics_port,
                   OverloadProbe(busy, config.rpc_threads + config.max_queue), config)

    def serve(self, host: str) -> MetricsEndpoint | None:
        if self.metrics is None or self.port is None:
            return None
        endpoint = MetricsEndpoint(self.metrics, host, self.port)
        log.info("metrics at http://%s:%d/metrics", host, endpoint.port)
        return endpoint

    def add_feedback(self, recorder: FeedbackRecorder) -> None:
        """CTR, MRR and clicks by rank, and what the feedback log wrote or dropped."""
        if self.metrics is None:
            return
        self.metrics.registry.register(ClickCollector(recorder.stats))
        self.metrics.registry.register(FeedbackLogCollector(recorder))

    def attach(self, service: SearchService) -> None:
        """Every micro-batch the model runs lands in the batch-size histogram."""
        if self.metrics is not None and service.model is not None:
            service.model.batcher.on_batch.append(self.metrics.batch_size.observe)
        if self.metrics is not None and self.config is not None:
            from server.watch import watch_queries

            self.observers = watch_queries(self.config, service, self.metrics)

    def close(self) -> None:
        for observer in self.observers:
            observer.close()
