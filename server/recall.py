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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from index.ann.search import Searcher
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


@dataclass(frozen=True)
class Sample:
    """The sampled queries of one answered call: one exact scan serves them all."""

    searcher: Searcher
    vectors: np.ndarray  # (n, dim), unit length
    served: list[np.ndarray]  # ids returned, best first
    ks: list[int]


def exact_top_k(searcher: Searcher, held: np.ndarray, queries: np.ndarray, k: int,
                block: int = 65536) -> np.ndarray:
    """(n, k) ids of the exact inner-product top k among ``held`` ids, block by block."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), 0), dtype=np.int64)
    for ids, vectors in searcher.store.iter_batches(held, block):
        scores = np.concatenate([best_scores, queries @ vectors.T], axis=1)
        cand = np.concatenate([best_ids, np.broadcast_to(ids, (len(queries), len(ids)))], axis=1)
        keep = min(k, scores.shape[1])
        top = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
        best_scores = np.take_along_axis(scores, top, axis=1)
        best_ids = np.take_along_axis(cand, top, axis=1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    return np.take_along_axis(best_ids, order, axis=1)


class LiveRecall:
    """The observer, its thread, and the rolling recall per k."""

    def __init__(self, config: RecallConfig = RecallConfig(), seed: int | None = None):
        self.config = config
        self._random = random.Random(seed)
        self._tokens = 1.0
        self._refill = time.monotonic()
        self._lock = threading.Lock()
        self._held: tuple[Searcher | None, np.ndarray] = (None, np.empty(0, dtype=np.int64))
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

    def held_ids(self, searcher: Searcher) -> np.ndarray:
        """The live ids of the sample's version, read once per version."""
        if self._held[0] is not searcher:
            self._held = (searcher, searcher.held_ids())
        return self._held[1]

    def _handle_all(self, samples: list[Sample]) -> None:
        for sample in samples:
            self._handle(sample)

    def _handle(self, sample: Sample) -> None:
        held = self.held_ids(sample.searcher)
        exact = exact_top_k(sample.searcher, held, sample.vectors, max(sample.ks))
        for served, truth, k in zip(sample.served, exact, sample.ks, strict=True):
            k = min(k, len(truth))
            if k == 0:
                continue
            found = len(np.intersect1d(served[:k], truth[:k]))
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
