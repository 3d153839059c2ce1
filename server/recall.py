"""Live recall: a sample of real queries searched again exactly, off the request path.

``visearch serve --recall-sample 0.01`` picks about 1 % of the plain queries it
answers (image, text or vector; no filters or "more like this", whose hits are
not the index's top k), at most ``max_per_second`` of them, and hands the query
vector and the ids it returned to a thread. The thread scans the version's stored
vectors exactly and exports k-recall@k (the share of the exact top k that was
served) per k as a rolling mean, so a drop after upserts shows on a dashboard
without anyone running ``visearch eval``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from index.ann.search import Searcher
from index.drift import products
from server.observers import Worker, answered
from server.query import Query

MAX_K_LABEL = 100  # larger k share one label, so the series stay few


def k_label(k: int) -> str:
    return str(k) if k <= MAX_K_LABEL else f"{MAX_K_LABEL + 1}+"


@dataclass(frozen=True)
class RecallConfig:
    fraction: float = 0.01  # of plain answered queries
    max_per_second: float = 5.0  # sampled queries per second, at most
    window: int = 200  # samples per k in the rolling mean
    cache_bytes: int = 256 << 20  # stored vectors kept in RAM as float32 up to this size


@dataclass(frozen=True)
class Sample:
    """The sampled queries of one answered call: one exact scan serves them all."""

    searcher: Searcher
    vectors: np.ndarray  # (n, dim), unit length
    served: list[np.ndarray]  # ids returned, best first
    ks: list[int]


def exact_top_k(blocks: Iterable[tuple[np.ndarray, np.ndarray]], queries: np.ndarray,
                k: int) -> np.ndarray:
    """(n, k) ids of the exact inner-product top k over (ids, unit vectors) blocks."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), 0), dtype=np.int64)
    for ids, vectors in blocks:
        scores = np.concatenate([best_scores, products(queries, vectors)], axis=1)
        cand = np.concatenate([best_ids, np.broadcast_to(ids, (len(queries), len(ids)))], axis=1)
        keep = min(k, scores.shape[1])
        top = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
        best_scores = np.take_along_axis(scores, top, axis=1)
        best_ids = np.take_along_axis(cand, top, axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    return np.take_along_axis(best_ids, order, axis=1)


def _state(searcher: Searcher) -> tuple[int, int]:
    """What changes when a live (--writable) index changes in place: its vector counts."""
    return searcher.ntotal, int(getattr(searcher.store, "count", 0))


class ExactSide:
    """The stored vectors of one version for exact search: held in RAM as float32 when they
    fit ``cache_bytes`` (a scan is then one matrix product), else read block by block."""

    def __init__(self, searcher: Searcher, cache_bytes: int):
        self.searcher = searcher
        self.state = _state(searcher)
        self.ids = searcher.held_ids()
        self.matrix: np.ndarray | None = None
        if len(self.ids) * searcher.dim * 4 <= cache_bytes:
            self.matrix = np.concatenate([v for _, v in searcher.store.iter_batches(self.ids)]) \
                if len(self.ids) else np.zeros((0, searcher.dim), dtype=np.float32)

    def top_k(self, queries: np.ndarray, k: int) -> np.ndarray:
        if self.matrix is not None:
            return exact_top_k([(self.ids, self.matrix)], queries, k)
        return exact_top_k(self.searcher.store.iter_batches(self.ids, 65536), queries, k)


class LiveRecall:
    """The observer, its thread, and the rolling recall per k."""

    def __init__(self, config: RecallConfig = RecallConfig(), seed: int | None = None):
        self.config = config
        self._random = random.Random(seed)
        self._tokens = 1.0
        self._refill = time.monotonic()
        self._lock = threading.Lock()
        self._exact: ExactSide | None = None
        self.recall: dict[str, deque[float]] = {}
        self.samples: dict[str, int] = {}
        self.skipped_by_rate = 0
        self.worker: Worker[Sample] = Worker("live-recall", self._handle_all, size=64)

    def __call__(self, searcher: Searcher, queries: Sequence[Query], vectors: Sequence[Any],
                 results: Sequence[Any]) -> None:
        picked = [i for i in answered(queries, vectors, results)
                  if self._random.random() < self.config.fraction]
        picked = [i for i in picked if self._take_token()]
        if picked:
            self.worker.offer(Sample(
                searcher, np.concatenate([vectors[i] for i in picked]),
                [np.array([hit[0] for hit in results[i].hits], dtype=np.int64) for i in picked],
                [queries[i].params.k for i in picked]))

    def _take_token(self) -> bool:
        """A token bucket: ``max_per_second`` samples, a burst of at most one second's worth."""
        with self._lock:
            now = time.monotonic()
            rate = self.config.max_per_second
            self._tokens = min(max(rate, 1.0), self._tokens + (now - self._refill) * rate)
            self._refill = now
            if self._tokens < 1.0:
                self.skipped_by_rate += 1
                return False
            self._tokens -= 1.0
            return True

    def exact_side(self, searcher: Searcher) -> ExactSide:
        """The sample's version for exact search, prepared once per version (and again
        when a live index has changed in place since)."""
        if self._exact is None or self._exact.searcher is not searcher \
                or self._exact.state != _state(searcher):
            self._exact = None  # the previous version's vectors go before the next load
            self._exact = ExactSide(searcher, self.config.cache_bytes)
        return self._exact

    def _handle_all(self, samples: list[Sample]) -> None:
        """Samples of one version that queued up meanwhile share one scan."""
        start = 0
        for end in range(1, len(samples) + 1):
            if end == len(samples) or samples[end].searcher is not samples[start].searcher:
                self._handle(samples[start:end])
                start = end

    def _handle(self, samples: list[Sample]) -> None:
        exact_side = self.exact_side(samples[0].searcher)
        ks = [k for s in samples for k in s.ks]
        served = [ids for s in samples for ids in s.served]
        exact = exact_side.top_k(np.concatenate([s.vectors for s in samples]), max(ks))
        for found_ids, truth, k in zip(served, exact, ks, strict=True):
            k = min(k, len(truth))
            if k == 0:
                continue
            found = len(np.intersect1d(found_ids[:k], truth[:k]))
            label = k_label(k)
            with self._lock:
                self.recall.setdefault(label, deque(maxlen=self.config.window)).append(found / k)
                self.samples[label] = self.samples.get(label, 0) + 1

    def summary(self) -> dict[str, tuple[float, int]]:
        """Per k label: (mean recall over the window, samples ever taken)."""
        with self._lock:
            return {label: (float(np.mean(values)), self.samples[label])
                    for label, values in self.recall.items() if values}

    def close(self) -> None:
        self.worker.close()


class RecallCollector(Collector):
    def __init__(self, live: LiveRecall):
        self.live = live

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        recall = GaugeMetricFamily("visearch_live_recall_at_k",
                                   "k-recall@k of sampled live queries against exact search "
                                   "(rolling mean)", labels=["k"])
        samples = CounterMetricFamily("visearch_live_recall_samples",
                                      "sampled queries searched exactly", labels=["k"])
        for label, (mean, count) in sorted(self.live.summary().items()):
            recall.add_metric([label], mean)
            samples.add_metric([label], count)
        yield recall
        yield samples
        yield CounterMetricFamily("visearch_live_recall_dropped",
                                  "samples not searched: the exact-search queue was full",
                                  value=self.live.worker.dropped)
        yield CounterMetricFamily("visearch_live_recall_rate_limited",
                                  "samples skipped by --recall-max-per-second",
                                  value=self.live.skipped_by_rate)
