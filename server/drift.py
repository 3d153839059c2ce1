"""Drift of live queries: the build's corpus profile (index/drift.py) against a rolling
window of the query embeddings the server answered, exported as PSI gauges.

Counts per bin are kept as queries enter and leave the window, so a scrape costs a
few hundred additions; the binning runs in the observer's thread, never on the
request path. A new index version brings its own reference, and the window restarts.
"""

from __future__ import annotations

import logging
import threading
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
LINGER_SECONDS = 0.5  # answered queries are binned in batches, twice a second at most


@dataclass(frozen=True)
class DriftConfig:
    window: int = 1000  # queries; PSI's noise floor is about bins / window
    threshold: float = drift.THRESHOLD
    min_queries: int = 200  # no warning before the window holds this many


class DriftWindow:
    """Bin counts of the last ``window`` queries against one reference, kept in ring
    buffers so a batch of queries enters (and the oldest leave) in a few numpy calls."""

    def __init__(self, reference: drift.Reference, window: int):
        self.reference = reference
        self.window = window
        projections = len(reference.projection_edges)
        self.regions = np.zeros(max(len(reference.centroids), 1), dtype=np.int64)
        self.projections = np.zeros((projections, drift.BINS), dtype=np.int64)
        self.top1 = np.zeros(drift.BINS, dtype=np.int64)
        self.vector_sum = np.zeros(reference.dim, dtype=np.float64)
        self._region = np.zeros(window, dtype=np.int64)
        self._bins = np.zeros((window, projections), dtype=np.int64)
        self._top1_bin = np.zeros(window, dtype=np.int64)
        self._vectors = np.zeros((window, reference.dim), dtype=np.float32)
        self._scores = np.zeros(window, dtype=np.float32)
        self._next = 0  # ring position of the next query
        self.size = 0
        self._lock = threading.Lock()

    def add(self, vectors: np.ndarray, top1: np.ndarray) -> None:
        vectors, top1 = vectors[-self.window:], top1[-self.window:]
        ref, n = self.reference, len(vectors)
        rows = (self._next + np.arange(n)) % self.window
        new = (ref.regions_of(vectors), ref.projection_bins(vectors), ref.top1_bins(top1))
        with self._lock:
            leaving = rows[self.window - self.size:]  # slots already holding a query
            if len(leaving):
                self._count(leaving, -1)
            self._region[rows], self._bins[rows], self._top1_bin[rows] = new
            self._vectors[rows], self._scores[rows] = vectors, top1
            self._count(rows, 1)
            self._next = int((self._next + n) % self.window)
            self.size = min(self.window, self.size + n)

    def _count(self, rows: np.ndarray, sign: int) -> None:
        self.regions += sign * np.bincount(self._region[rows], minlength=len(self.regions))
        projections = self._bins.shape[1]
        flat = (self._bins[rows] + np.arange(projections) * drift.BINS).ravel()
        self.projections += sign * np.bincount(flat, minlength=projections * drift.BINS
                                               ).reshape(projections, drift.BINS)
        self.top1 += sign * np.bincount(self._top1_bin[rows], minlength=drift.BINS)
        self.vector_sum += sign * self._vectors[rows].sum(axis=0, dtype=np.float64)

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
            scores = self._scores[:self.size] if self.size < self.window else self._scores
            return drift.DriftReport(self.size, psi, drift.cosine(self.vector_sum, ref.mean),
                                     float(np.median(scores)) if self.size else float("nan"),
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
        self._since_check = 0
        self.worker: Worker[tuple[Searcher, list[np.ndarray], list[float]]] = Worker(
            "drift", self._handle_all, size=16384, linger=LINGER_SECONDS)

    def __call__(self, searcher: Searcher, queries: Sequence[Query], vectors: Sequence[Any],
                 results: Sequence[Any]) -> None:
        wanted = answered(queries, vectors, results)
        if wanted:
            top1 = [results[i].hits[0][2] if results[i].hits else -1.0 for i in wanted]
            self.worker.offer((searcher, [vectors[i] for i in wanted], top1))

    def _handle_all(self, items: list[tuple[Searcher, list[np.ndarray], list[float]]]
                    ) -> None:
        """What queued up meanwhile, binned together per version (one numpy pass)."""
        start = 0
        for end in range(1, len(items) + 1):
            if end == len(items) or items[end][0] is not items[start][0]:
                batch = items[start:end]
                self._handle((batch[0][0], np.concatenate([v for b in batch for v in b[1]]),
                              np.array([t for b in batch for t in b[2]], dtype=np.float32)))
                start = end

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
            self._since_check += len(vectors)
            if self.current.size >= self.config.min_queries and self._since_check >= 50:
                self._since_check = 0
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
