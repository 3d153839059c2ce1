#!/usr/bin/env python3
"""Recall levers side by side on raw faiss: which index and re-rank reach 0.95 10-recall@10.

Hand-run measurement behind the automatic index choice (docs/measurements.md), not part
of scripts/bench.py: every lever is trained on the same sample of the same vectors, and
batched / single-query speed is reported against an exact flat scan in the same run.

    python scripts/measure_levers.py --n 100000 --dist clip-cone --out levers.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import DISTRIBUTIONS  # noqa: E402


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    pairs = zip(found, truth, strict=True)
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in pairs]))


def numpy_rerank(store: np.ndarray, q: np.ndarray, cand: np.ndarray, k: int) -> np.ndarray:
    """Our re-rank: gather float16 rows, exact inner products, best k per query."""
    vecs = store[np.maximum(cand, 0)].astype(np.float32)
    exact = np.einsum("qkd,qd->qk", vecs, q)
    exact[cand < 0] = -np.inf
    top = np.argpartition(-exact, k - 1, axis=1)[:, :k]
    return np.take_along_axis(cand, top, axis=1)


def timed(fn, repeats: int = 3) -> float:
    best = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t)
    return float(np.median(best))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--dist", choices=sorted(DISTRIBUTIONS), default="clip-cone")
    ap.add_argument("--specs", default="IVF{nl},PQ64x8;IVF{nl},PQ64x4fs;IVF{nl},PQ128x4fs")
    ap.add_argument("--nprobes", default="16,32,64")
    ap.add_argument("--refines", default="1,4,8,16,32")
    ap.add_argument("--train", type=int, default=0, help="training sample (0: 64 per list)")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    faiss.omp_set_num_threads(args.threads)
    gen = DISTRIBUTIONS[args.dist]
    xb = gen(args.n, args.dim, sample_seed=1)
    xq = gen(args.queries, args.dim, sample_seed=99)
    nl = 2 ** round(np.log2(4 * np.sqrt(args.n)))
    store = xb.astype(np.float16)
    flat = faiss.IndexFlatIP(args.dim)
    flat.add(xb)
    t_flat = timed(lambda: flat.search(xq, 10), 2)
    _, truth = flat.search(xq, 10)
    flat_single = [timed(lambda q=q: flat.search(q[None], 10), 1) for q in xq[:20]]
    base = {"n": args.n, "dist": args.dist, "flat_batch_qps": args.queries / t_flat,
            "flat_single_ms": 1000 * float(np.median(flat_single))}
    print(json.dumps(base), flush=True)
    rng = np.random.default_rng(0)
    train_n = min(args.n, args.train or 64 * nl)
    sample = xb[np.sort(rng.choice(args.n, train_n, replace=False))]
    with args.out.open("a") as out:
        out.write(json.dumps({"flat": base}) + "\n")
        for template in args.specs.split(";"):
            spec = template.format(nl=nl)
            index = faiss.index_factory(args.dim, spec, faiss.METRIC_INNER_PRODUCT)
            ivf = faiss.extract_index_ivf(index)
            if hasattr(faiss.downcast_index(ivf), "do_polysemous_training"):
                faiss.downcast_index(ivf).do_polysemous_training = False
            t = time.perf_counter()
            index.train(sample)
            train_s = time.perf_counter() - t
            t = time.perf_counter()
            index.add(xb)
            add_s = time.perf_counter() - t
            code = faiss.downcast_index(ivf).code_size
            for nprobe in map(int, args.nprobes.split(",")):
                p = faiss.SearchParametersIVF(nprobe=nprobe)
                for refine in map(int, args.refines.split(",")):
                    depth = 10 * refine

                    def batch(p=p, depth=depth, refine=refine, index=index):
                        _, cand = index.search(xq, depth, params=p)
                        return numpy_rerank(store, xq, cand, 10) if refine > 1 else cand

                    found = batch()
                    t_b = timed(batch)
                    single = []
                    for q in xq[:args.single]:
                        t = time.perf_counter()
                        _, cand = index.search(q[None], depth, params=p)
                        if refine > 1:
                            numpy_rerank(store, q[None], cand, 10)
                        single.append(time.perf_counter() - t)
                    row = {"spec": spec, "train_n": train_n, "train_s": round(train_s, 1),
                           "add_s": round(add_s, 1), "code_bytes": code, "nprobe": nprobe,
                           "refine": refine, "rerank": "numpy-fp16-ram",
                           "recall10": recall(found, truth),
                           "batch_qps": args.queries / t_b,
                           "ratio_flat": (args.queries / t_b) / base["flat_batch_qps"],
                           "single_p50_ms": 1000 * float(np.median(single)), **base}
                    print(json.dumps(row), flush=True)
                    out.write(json.dumps(row) + "\n")
                    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
