"""Filtered search QPS and 10-recall@10 at 50/10/1/0.1 % selectivity vs unfiltered, per
strategy, on synthetic clustered vectors with a synthetic ``bucket`` column.

    python scripts/bench_filter.py --n 100000 --dim 64 --queries 200 [--keep DIR]

Every configuration is warmed up first (the filter's mask is computed once and cached),
then measured in ``--rounds`` rounds; each round times the unfiltered search right before
each filtered configuration, so the ratio filtered/unfiltered holds on a shared machine
whose speed drifts. The tables give the median QPS and the median of the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.build.publish import IndexingOptions
from index.build.vector_import import import_vectors
from index.rerank.stage import Rerank, allowed_ids, rank
from index.store import metadata
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory
from tests.synthetic import clustered, keys

THRESHOLDS = "500,100,10,1"  # bucket < t matches t/10 % of the images
STRATEGIES = (None, "exact", "selector", "post")


def _qps(run: Callable[[np.ndarray], object], queries: np.ndarray) -> float:
    start = time.perf_counter()
    for q in queries:
        run(q)
    return len(queries) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--strategies", default="auto,exact,selector,post",
                        help="comma-separated: auto, exact, selector, post")
    parser.add_argument("--thresholds", default=THRESHOLDS,
                        help=f"filters bucket < t, t/10 %% of the images (default {THRESHOLDS})")
    parser.add_argument("--keep", type=Path, help="index directory to reuse (built there "
                        "when missing), so reruns skip the build")
    args = parser.parse_args()
    wanted = [None if s == "auto" else s for s in args.strategies.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        directory = IndexDirectory(args.keep or Path(tmp) / "idx")
        if directory.current_version() is None:
            import_vectors(directory, clustered(args.n, args.dim), keys(args.n),
                           precomputed_identity(args.dim), IndexingOptions(progress=False))
            catalog = directory.catalog()
            metadata.write_fields(catalog, [(i, {"bucket": i % 1000}) for i in range(args.n)],
                                  {"bucket": "integer"})
            catalog.close()
        searcher = Searcher(directory)
        n = searcher.ntotal
        queries = searcher.prepare(clustered(args.queries, args.dim, seed=5))
        print(f"N={n:,} dim={searcher.dim} {searcher.manifest.index.spec}, "
              f"{args.queries} queries x {args.rounds} rounds")

        def plain(q: np.ndarray) -> object:
            return searcher.search_unit(q[None], SearchParams(k=10))

        vectors = searcher.store.get(np.arange(n)).astype(np.float32)
        configs = []
        for t in (int(x) for x in args.thresholds.split(",")):
            name = f"{t / 10:g}%"
            spec = Rerank(filter=f"bucket < {t}")
            allowed = allowed_ids(searcher, spec)
            assert allowed is not None
            ids = np.flatnonzero(allowed)
            truth = [set(ids[np.argsort(-(vectors[ids] @ q))[:10]].tolist()) for q in queries]
            for how in (h for h in STRATEGIES if h in wanted):
                got = [rank(searcher, q[None], SearchParams(k=10), spec, force=how)
                       for q in queries]  # the warm-up, and the recall
                recall = float(np.mean([len({h.id for h in g.hits} & tr) / 10
                                        for g, tr in zip(got, truth, strict=True)]))
                label = how or f"auto ({got[0].strategy})"
                configs.append((name, label, spec, how, recall))
        _qps(plain, queries)
        qps: dict[int, list[float]] = {i: [] for i in range(len(configs))}
        ratios: dict[int, list[float]] = {i: [] for i in range(len(configs))}
        base: list[float] = []
        for _ in range(args.rounds):
            for i, (_, _, spec, how, _) in enumerate(configs):
                unfiltered = _qps(plain, queries)
                filtered = _qps(lambda q, s=spec, h=how: rank(searcher, q[None],
                                                               SearchParams(k=10), s, force=h),
                                queries)
                base.append(unfiltered)
                qps[i].append(filtered)
                ratios[i].append(filtered / unfiltered)
        print("| selectivity | strategy | QPS | filtered / unfiltered | 10-recall@10 |")
        print("|---|---|---:|---:|---:|")
        print(f"| none | unfiltered | {statistics.median(base):,.0f} | 1.00 | - |")
        for i, (name, label, _, _, recall) in enumerate(configs):
            print(f"| {name} | {label} | {statistics.median(qps[i]):,.0f} | "
                  f"{statistics.median(ratios[i]):.2f} | {recall:.3f} |")
        searcher.close()


if __name__ == "__main__":
    main()
