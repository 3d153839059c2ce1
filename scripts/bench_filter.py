"""Filtered search QPS and 10-recall@10 at 50/10/1/0.1 % selectivity vs unfiltered, per
strategy, on synthetic clustered vectors with a synthetic ``bucket`` column.

    python scripts/bench_filter.py --n 100000 --dim 64 --queries 200
"""

from __future__ import annotations

import argparse
import tempfile
import time
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

SELECTIVITY = {"50%": 500, "10%": 100, "1%": 10, "0.1%": 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = IndexDirectory(Path(tmp) / "idx")
        import_vectors(directory, clustered(args.n, args.dim), keys(args.n),
                       precomputed_identity(args.dim), IndexingOptions(progress=False))
        catalog = directory.catalog()
        metadata.write_fields(catalog, [(i, {"bucket": i % 1000}) for i in range(args.n)],
                              {"bucket": "integer"})
        catalog.close()
        searcher = Searcher(directory)
        queries = searcher.prepare(clustered(args.queries, args.dim, seed=5))
        print(f"N={args.n:,} dim={args.dim} {searcher.manifest.index.spec}")
        start = time.perf_counter()
        for q in queries:
            searcher.search_unit(q[None], SearchParams(k=10))
        base = len(queries) / (time.perf_counter() - start)
        print(f"| unfiltered | - | {base:,.0f} | - |")
        vectors = searcher.store.get(np.arange(args.n)).astype(np.float32)
        for name, t in SELECTIVITY.items():
            spec = Rerank(filter=f"bucket < {t}")
            allowed = allowed_ids(searcher, spec)
            assert allowed is not None
            ids = np.flatnonzero(allowed)
            truth = [set(ids[np.argsort(-(vectors[ids] @ q))[:10]].tolist()) for q in queries]
            for how in (None, "exact", "selector", "post"):
                start = time.perf_counter()
                got = [rank(searcher, q[None], SearchParams(k=10), spec, force=how)
                       for q in queries]
                qps = len(queries) / (time.perf_counter() - start)
                recall = np.mean([len({h.id for h in g.hits} & tr) / 10
                                  for g, tr in zip(got, truth, strict=True)])
                label = how or f"auto ({got[0].strategy})"
                print(f"| {name} | {label} | {qps:,.0f} | {recall:.3f} |")
        searcher.close()


if __name__ == "__main__":
    main()
