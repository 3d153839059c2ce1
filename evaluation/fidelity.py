"""ANN fidelity: the index against exact search over the stored vectors, across settings.

The search itself is behind ``evaluation.backends.SearchBackend``, so the same
sweep measures the index in-process or end to end through the gRPC server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from evaluation.backends import SearchBackend
from evaluation.metrics import k_recall_at_k, one_recall_at_k
from index.ann.query import SearchParams
from index.ann.tuning import exact_neighbours  # noqa: F401 - its home before tuning existed
from index.store.manifest import IndexSettings


@dataclass(frozen=True)
class Setting:
    nprobe: int | None
    refine: int

    def params(self, k: int) -> SearchParams:
        return SearchParams(k=k, nprobe=self.nprobe, refine_factor=self.refine)

    @property
    def label(self) -> str:
        probe = "-" if self.nprobe is None else str(self.nprobe)
        return f"nprobe={probe} refine={self.refine}"


@dataclass
class SettingResult:
    setting: Setting
    k_recall: dict[int, float]
    one_recall: dict[int, float]
    batch_qps: float
    single_ms: dict[str, float]  # mean, p50, p99 of one query per call
    single_qps: float
    batch_ms: dict[str, float]  # mean, p50, p99 of one call with batch_size queries
    batch_size: int
    pareto: bool = False


@dataclass
class Sweep:
    results: list[SettingResult]
    ks: list[int]
    num_queries: int
    single_queries: int


def default_settings(nlist: int | None, default_nprobe: int | None, refine: int,
                     exact: bool) -> list[Setting]:
    """Powers of four up to nlist plus the default nprobe; with and without re-ranking."""
    if nlist is None:
        return [Setting(None, 1)]
    probes = sorted({p for p in (1, 4, 16, 64, 256, 1024) if p <= nlist} | {default_nprobe or 1})
    return [Setting(p, r) for r in _refines(refine, exact) for p in probes]


def _refines(refine: int, exact: bool) -> list[int]:
    """No re-ranking, the index's default and refine 4 (a tuned default may be 1)."""
    return [1] if exact else sorted({1, max(1, refine), 4})


def settings_to_sweep(index: IndexSettings, nprobes: list[int] | None) -> list[Setting]:
    """The given nprobe values (or the default ladder), with and without re-ranking."""
    if not nprobes:
        return default_settings(index.nlist, index.default_nprobe, index.refine_factor,
                                index.exact)
    return [Setting(p, r) for r in _refines(index.refine_factor, index.exact) for p in nprobes]


def measure(backend: SearchBackend, setting: Setting, queries: np.ndarray, truth: np.ndarray,
            ks: list[int], single_queries: int, batch_size: int = 100) -> SettingResult:
    """Recall of every query, then latency one query per call and ``batch_size`` per call."""
    params = setting.params(max(ks))
    backend.search(queries[:1], params)  # warm caches and connections
    batch_ms, parts = [], []
    for start in range(0, len(queries), batch_size):
        began = time.perf_counter()
        parts.append(backend.search(queries[start:start + batch_size], params))
        batch_ms.append((time.perf_counter() - began) * 1000)
    ids = np.concatenate([h.ids for h in parts])
    single_ms = []
    for query in queries[:single_queries]:
        began = time.perf_counter()
        backend.search_one(query, params)
        single_ms.append((time.perf_counter() - began) * 1000)
    return SettingResult(
        setting=setting,
        k_recall={k: k_recall_at_k(ids, truth, k) for k in ks},
        one_recall={k: one_recall_at_k(ids, truth, k) for k in ks},
        batch_qps=len(queries) / (sum(batch_ms) / 1000),
        single_ms=_summary(single_ms),
        single_qps=1000 / float(np.mean(single_ms)),
        batch_ms=_summary(batch_ms),
        batch_size=batch_size,
    )


def _summary(latencies: list[float]) -> dict[str, float]:
    lat = np.array(latencies)
    return {"mean": float(lat.mean()), "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99))}


def sweep(backend: SearchBackend, queries: np.ndarray, truth: np.ndarray, ks: list[int],
          settings: list[Setting], front_k: int, single_queries: int = 200,
          batch_size: int = 100) -> Sweep:
    """Every setting measured; the Pareto front marked on ``front_k``-recall vs batch QPS."""
    results = [measure(backend, s, queries, truth, ks, min(single_queries, len(queries)),
                       batch_size) for s in settings]
    mark_pareto(results, front_k)
    return Sweep(results, ks, len(queries), min(single_queries, len(queries)))


def mark_pareto(results: list[SettingResult], k: int) -> None:
    """A setting is on the front when no other is at least as good in recall and speed and
    better in one of them."""
    for r in results:
        r.pareto = not any(
            o.k_recall[k] >= r.k_recall[k] and o.batch_qps >= r.batch_qps
            and (o.k_recall[k] > r.k_recall[k] or o.batch_qps > r.batch_qps)
            for o in results if o is not r)


def fastest_meeting(results: list[SettingResult], target: float, k: int
                    ) -> SettingResult | None:
    """The fastest (batch QPS) setting whose k-recall@k reaches ``target``."""
    meeting = [r for r in results if r.k_recall[k] >= target]
    return max(meeting, key=lambda r: r.batch_qps) if meeting else None
