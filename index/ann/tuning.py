"""Self-tuning: the cheapest nprobe and refine depth that reach a recall target.

One code path for the end of every build and for `visearch eval --target-recall
--apply`. Queries are a seeded sample of the stored vectors the version holds;
ground truth is exact inner-product search over those same vectors. A query's own
id is left out of both its results and its truth (it would be a free hit, worth
0.1 of 10-recall@10), so the recall measured is that of a new, unseen image.

The search is bounded: a few hundred queries, a ladder of nprobe per refine depth
that stops once the target is met or recall stops growing, and a time cap after
which the best setting found so far is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
from faiss.contrib.exhaustive_search import knn_ground_truth

from index.ann import faiss_index as ann
from index.ann.params import estimating_codes
from index.ann.query import MAX_CANDIDATES, Hits, SearchParams
from index.store.manifest import Manifest
from index.store.vectors import VectorStore, sample_ids

if TYPE_CHECKING:
    from index.ann.search import Searcher

DEFAULT_TARGET = 0.95
DEFAULT_K = 10
REFINES = (1, 2, 4, 8, 16, 32, 64)
PLATEAU = 0.002  # a doubling of nprobe (two rungs) that gains less than this ends the ladder
# Stored vectors sit where k-means put the lists, so they read more recall than new images:
# on CLIP-shaped vectors 0.960 -> 0.946 at 100k and 0.956 -> 0.948 at 1M (docs/benchmarks.md,
# "Recall by default"). The tuner aims this far above the target so new queries reach it.
MARGIN = 0.015

SearchFn = Callable[[np.ndarray, SearchParams], Hits]


@dataclass(frozen=True)
class TuneConfig:
    target: float = DEFAULT_TARGET
    k: int = DEFAULT_K
    queries: int = 300
    margin: float = MARGIN  # aimed above ``target`` on the sampled stored vectors
    time_cap_s: float = 60.0
    seed: int = 7
    repeats: int = 2  # timing: the fastest of this many batched runs


@dataclass(frozen=True)
class Trial:
    nprobe: int | None
    refine: int
    recall: float
    ms_per_query: float


@dataclass(frozen=True)
class Tuned:
    """The chosen setting and what was measured; ``met`` False when no setting reached the
    target (the best recall found is then chosen)."""

    nprobe: int | None
    refine: int
    recall: float
    target: float
    k: int
    queries: int
    met: bool
    trials: tuple[Trial, ...]
    seconds: float
    capped: bool = False  # the time cap ended the search before the ladder did
    vectors: int = 0  # vectors the tuned version held (0: not known)

    def summary(self) -> str:
        probe = "" if self.nprobe is None else f"nprobe {self.nprobe}, "
        verdict = "met" if self.met else "NOT met"
        cap = f", time cap hit after {len(self.trials)} trials" if self.capped else ""
        return (f"{probe}refine {self.refine}: {self.k}-recall@{self.k} {self.recall:.3f} "
                f"(target {self.target:.2f} {verdict}, {self.queries} sampled queries{cap})")


def recall_without_self(found: np.ndarray, truth: np.ndarray, query_ids: np.ndarray,
                        k: int) -> float:
    """k-recall@k with each query's own id dropped from its results and its truth."""
    total = 0.0
    for row_found, row_truth, own in zip(found, truth, query_ids, strict=True):
        f = [int(i) for i in row_found if i >= 0 and i != own][:k]
        t = [int(i) for i in row_truth if i >= 0 and i != own][:k]
        total += len(set(f) & set(t)) / max(1, len(t))
    return total / max(1, len(query_ids))


def nprobe_ladder(nlist: int) -> list[int]:
    """Powers of two from 1 to nlist, the half-octaves between them (3, 6, 12, ..., 96, 192,
    ...) and nlist itself. Half-octaves because a doubling is too coarse a step where the
    scan is the cost: on CLIP-shaped vectors at 1M, refine 2 reaches the target at 96 of
    4096 lists, and without that rung the choice was nprobe 128 at refine 1, a third more
    codes scanned per query (docs/measurements.md, section 4)."""
    ladder = {nlist}
    for i in range(0, max(1, nlist).bit_length()):
        ladder |= {2 ** i, 3 * 2 ** i // 2} if i else {1}
    return sorted(p for p in ladder if p <= nlist)


def measure_trial(search: SearchFn, queries: np.ndarray, query_ids: np.ndarray,
                  truth: np.ndarray, nprobe: int | None, refine: int, k: int,
                  repeats: int = 1) -> Trial:
    params = SearchParams(k=k + 1, nprobe=nprobe, refine_factor=refine)
    best = float("inf")
    hits = None
    for _ in range(max(1, repeats)):
        began = time.perf_counter()
        hits = search(queries, params)
        best = min(best, time.perf_counter() - began)
    assert hits is not None
    return Trial(nprobe, refine, recall_without_self(hits.ids, truth, query_ids, k),
                 1000 * best / max(1, len(queries)))


def tune(search: SearchFn, queries: np.ndarray, query_ids: np.ndarray, truth: np.ndarray,
         nlist: int | None, config: TuneConfig = TuneConfig(), first_refine: int = 1
         ) -> Tuned:
    """The fastest (per query, batched) setting whose recall reaches ``config.target`` plus
    ``config.margin`` (else the best recall found); ``met`` is judged against the target.

    ``truth`` holds the exact top ``k + 1`` ids of each query (its own id among them);
    ``nlist`` None means the index has no nprobe (flat). Refine depths below
    ``first_refine`` are not tried: codes whose scores are estimates (RaBitQ, PQ) plateau
    far below any target without re-ranking, and climbing the ladder to that plateau
    costs the walk its slowest trials.
    """
    began = time.perf_counter()
    k = config.k
    refines = [r for r in REFINES if (k + 1) * r <= MAX_CANDIDATES and r >= first_refine] \
        or [1]
    trials: list[Trial] = []

    def run(nprobe: int | None, refine: int) -> Trial:
        trial = measure_trial(search, queries, query_ids, truth, nprobe, refine, k,
                              config.repeats)
        trials.append(trial)
        return trial

    def out_of_time() -> bool:
        return time.perf_counter() - began > config.time_cap_s

    search(queries[:8], SearchParams(k=k + 1, nprobe=1 if nlist else None))  # warm up
    aim = min(config.target + config.margin, 1.0)
    if nlist is None:
        run(None, 1)
    else:
        _walk(run, nprobe_ladder(nlist), refines, aim, out_of_time)
    chosen, _ = choose(trials, aim)
    return Tuned(chosen.nprobe, chosen.refine, chosen.recall, config.target, k,
                 len(query_ids), chosen.recall >= config.target, tuple(trials),
                 time.perf_counter() - began, capped=out_of_time())


def _walk(run: Callable[[int, int], Trial], ladder: list[int], refines: list[int],
          target: float, out_of_time: Callable[[], bool]) -> None:
    """Up the nprobe ladder at each refine depth until the target is met; after that, a
    deeper refine is only worth trying at a smaller nprobe (at the same nprobe it costs
    more), so each deeper depth steps down from one rung below the best so far while it
    still meets the target, and the walk ends at the first depth that gains no rung."""
    met_at: int | None = None  # smallest ladder position that met the target
    for refine in refines:
        if met_at is None:
            seen: list[float] = []
            for position in range(len(ladder)):
                trial = run(ladder[position], refine)
                if trial.recall >= target:
                    met_at = position
                    break
                before = seen[-2] if len(seen) >= 2 else -1.0  # at half this nprobe
                if trial.recall - before < PLATEAU or out_of_time():
                    break
                seen.append(trial.recall)
        elif met_at == 0:
            return
        else:
            gained = False
            while met_at > 0 and not out_of_time():
                if run(ladder[met_at - 1], refine).recall < target:
                    break
                met_at -= 1
                gained = True
            if not gained:
                return
        if out_of_time():
            return


def choose(trials: list[Trial], target: float) -> tuple[Trial, bool]:
    """The fastest trial meeting ``target``; else the highest recall (then the fastest)."""
    meeting = [t for t in trials if t.recall >= target]
    if meeting:
        return min(meeting, key=lambda t: (t.ms_per_query, -t.recall)), True
    return max(trials, key=lambda t: (t.recall, -t.ms_per_query)), False


def exact_neighbours(store: VectorStore, live_ids: np.ndarray, queries: np.ndarray, k: int,
                     batch_size: int = 65536) -> np.ndarray:
    """Exact inner-product top-k ids over the live stored vectors, one block in RAM at a time."""
    blocks = (vectors for _, vectors in store.iter_batches(live_ids, batch_size))
    _, positions = knn_ground_truth(np.ascontiguousarray(queries, dtype=np.float32), blocks, k,
                                    metric_type=faiss.METRIC_INNER_PRODUCT, ngpu=0)
    return np.where(positions >= 0, live_ids[np.maximum(positions, 0)], -1)


def tune_searcher(searcher: Searcher, config: TuneConfig = TuneConfig()) -> Tuned:
    """Tune ``searcher``'s version: queries sampled from the ids it holds, truth exact."""
    held = searcher.held_ids()
    query_ids = sample_ids(held, min(config.queries, len(held)), seed=config.seed)
    queries = searcher.store.get(query_ids)
    truth = exact_neighbours(searcher.store, held, queries, min(config.k + 1, len(held)))
    nlist = searcher.manifest.index.nlist if searcher.is_ivf else None
    if nlist is not None:
        nlist = min(nlist, ann.ivf_of(searcher.index).nlist)
    first = 2 if estimating_codes(searcher.manifest.index.spec) else 1
    tuned = tune(searcher.search_unit, queries, query_ids, truth, nlist, config, first)
    return replace(tuned, vectors=len(held))


def tuned_fields(tuned: Tuned) -> dict[str, Any]:
    """The manifest's IndexSettings fields a tuning result sets."""
    return {"default_nprobe": tuned.nprobe, "refine_factor": tuned.refine,
            "target_recall": tuned.target, "tuned_recall": round(tuned.recall, 4),
            "tuned_k": tuned.k, "tune_queries": tuned.queries,
            "tuned_vectors": tuned.vectors or None}


def defaults_note(manifest: Manifest) -> str:
    """The build summary's part on search defaults: tuned recall and bytes per vector."""
    index = manifest.index
    if index.exact:
        return ""
    size = manifest.bytes_per_vector()
    memory = f"{size['code']} B/vector code + {size['rerank']} B re-rank store " \
             f"({size['rerank_in']})"
    if index.tuned_recall is None:
        return f"; nprobe {index.default_nprobe}, refine {index.refine_factor} (not tuned); " \
               f"{memory}"
    verdict = "met" if index.tuned_recall >= (index.target_recall or 0) else "NOT met"
    return (f"; tuned nprobe {index.default_nprobe}, refine {index.refine_factor}: "
            f"{index.tuned_k}-recall@{index.tuned_k} {index.tuned_recall:.3f} "
            f"(target {index.target_recall:.2f} {verdict}); {memory}")
