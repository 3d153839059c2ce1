"""Drift of live queries: the build's corpus profile (index/drift.py) against a rolling
window of the query embeddings the server answered, exported as PSI gauges.

Counts per bin are kept as queries enter and leave the window, so a scrape costs a
few hundred additions; the binning runs in the observer's thread, never on the
request path. A new index version brings its own reference, and the window restarts.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from index import drift
from index.ann.search import Searcher
from server.observers import Worker, answered
from server.query import Query

log = logging.getLogger("visearch.server")


@dataclass(frozen=True)
class DriftConfig:
    window: int = 1000  # queries; PSI's noise floor is about bins / window
    threshold: float = drift.THRESHOLD
    min_queries: int = 200  # no warning before the window holds this many


class DriftWindow:
    """Bin counts of the last ``window`` queries against one reference."""

    def __init__(self, reference: drift.Reference, window: int):
        self.reference = reference
        self.window = window
        self.regions = np.zeros(max(len(reference.centroids), 1), dtype=np.int64)
        self.projections = np.zeros((len(reference.projection_edges), drift.BINS), dtype=np.int64)
        self.top1 = np.zeros(drift.BINS, dtype=np.int64)
        self.vector_sum = np.zeros(reference.dim, dtype=np.float64)
        self._entries: deque[tuple[int, np.ndarray, int, np.ndarray, float]] = deque()
        self._lock = threading.Lock()

    def add(self, vectors: np.ndarray, top1: np.ndarray) -> None:
        ref = self.reference
        regions, bins, top1_bins = (ref.regions_of(vectors), ref.projection_bins(vectors),
                                    ref.top1_bins(top1))
        columns = np.arange(bins.shape[1])
        with self._lock:
            for i in range(len(vectors)):
                entry = (int(regions[i]), bins[i], int(top1_bins[i]), vectors[i], float(top1[i]))
                self._entries.append(entry)
                self._count(entry, columns, 1)
                if len(self._entries) > self.window:
                    self._count(self._entries.popleft(), columns, -1)

    def _count(self, entry: tuple[int, np.ndarray, int, np.ndarray, float],
               columns: np.ndarray, sign: int) -> None:
        region, bins, top1_bin, vector, _ = entry
        self.regions[region] += sign
        self.projections[columns, bins] += sign
        self.top1[top1_bin] += sign
        self.vector_sum += sign * vector

    @property
    def size(self) -> int:
        return len(self._entries)

    def report(self) -> drift.DriftReport:
        ref = self.reference
        with self._lock:
            psi = {"projections": float(np.mean([psi_of(s, c) for s, c in
                                                 zip(ref.projection_shares, self.projections,
                                                     strict=True)]))}
            if len(ref.centroids):
                psi["regions"] = psi_of(ref.region_shares, self.regions)
            if len(ref.top1_edges):
                psi["top1_score"] = psi_of(ref.top1_shares, self.top1)
            scores = [e[4] for e in self._entries]
            return drift.DriftReport(len(self._entries), psi,
                                     drift.cosine(self.vector_sum, ref.mean),
                                     float(np.median(scores)) if scores else float("nan"),
                                     ref.top1_median)


def psi_of(shares: np.ndarray, counts: np.ndarray) -> float:
    return drift.psi(shares, counts) if counts.sum() else 0.0


class DriftTracker:
    """The server's observer: bins answered queries in a thread, warns on a crossing."""

    def __init__(self, config: DriftConfig = DriftConfig()):
        self.config = config
        self.version: int | None = None
        self.current: DriftWindow | None = None
        self._warned: set[str] = set()
        self.worker: Worker[tuple[Searcher, np.ndarray, np.ndarray]] = Worker(
            "drift", self._handle, size=1024)

    def __call__(self, searcher: Searcher, queries: Sequence[Query], vectors: Sequence[Any],
                 results: Sequence[Any]) -> None:
        wanted = answered(queries, vectors, results)
        if wanted:
            top1 = np.array([results[i].hits[0][2] if results[i].hits else -1.0
                             for i in wanted], dtype=np.float32)
            self.worker.offer((searcher, np.concatenate([vectors[i] for i in wanted]), top1))

    def _handle(self, item: tuple[Searcher, np.ndarray, np.ndarray]) -> None:
        searcher, vectors, top1 = item
        version = searcher.manifest.version
        if version != self.version:
            self.version = version
            reference = drift.Reference.from_json(searcher.manifest.drift)
            self.current = None if reference is None else DriftWindow(reference,
                                                                      self.config.window)
            self._warned.clear()
            if reference is None:
                log.info("index version %d has no drift reference (built before it "
                         "existed; rebuild to get one)", version)
        if self.current is not None:
            self.current.add(vectors, top1)
            if self.current.size >= self.config.min_queries and \
                    self.current.size % 50 < len(vectors):
                self._check(self.current.report())

    def _check(self, report: drift.DriftReport) -> None:
        for name, value in report.psi.items():
            if value > self.config.threshold and name not in self._warned:
                self._warned.add(name)
                log.warning("query drift: PSI of %s is %.2f over the last %d queries "
                            "(threshold %.2f)", name, value, report.queries,
                            self.config.threshold)
            elif value <= self.config.threshold:
                self._warned.discard(name)

    def close(self) -> None:
        self.worker.close()


class DriftCollector(Collector):
    def __init__(self, tracker: DriftTracker):
        self.tracker = tracker

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield CounterMetricFamily("visearch_drift_dropped",
                                  "answered queries not binned: the drift queue was full",
                                  value=self.tracker.worker.dropped)
        yield GaugeMetricFamily("visearch_drift_threshold", "PSI above which the log warns",
                                value=self.tracker.config.threshold)
        window = self.tracker.current
        if window is None:
            return
        report = window.report()
        yield GaugeMetricFamily("visearch_drift_window_queries",
                                "queries in the drift window", value=report.queries)
        psi = GaugeMetricFamily("visearch_drift_psi", "population stability index of the "
                                "window's queries against the build's corpus profile",
                                labels=["statistic"])
        for name, value in sorted(report.psi.items()):
            psi.add_metric([name], value)
        yield psi
        yield GaugeMetricFamily("visearch_drift_mean_cosine",
                                "cosine of the window's mean query to the corpus mean",
                                value=report.mean_cosine)
        yield GaugeMetricFamily("visearch_drift_top1_median",
                                "median top-1 score of the window's queries",
                                value=report.top1_median)
        yield GaugeMetricFamily("visearch_drift_reference_top1_median",
                                "median score of corpus items to their nearest other item",
                                value=report.reference_top1_median)
