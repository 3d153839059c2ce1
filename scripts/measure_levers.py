#!/usr/bin/env python3
"""Recall levers side by side on raw faiss: which index and re-rank reach 0.95 10-recall@10.

Hand-run measurement behind the automatic index choice (docs/measurements.md, section 4),
not part of scripts/bench.py: every lever is trained on the same sample of the same
vectors, and its batched speed is timed interleaved with an exact flat scan (faiss
IndexFlatIP over the same vectors) in the same run, so ratios survive a shared machine.

    python scripts/measure_levers.py --n 100000 --dist clip-cone --out levers.jsonl
    python scripts/measure_levers.py --index-dir /tmp/recall-clip-cone-1000000.idx \\
        --specs 'IVF4096,SQ8;IVF16384_HNSW32,SQ8+2level' --out levers-1m.jsonl

A spec is a faiss factory string (``{nl}`` is the automatic nlist, 4*sqrt(N)), optionally
with its own refine depths (``IVF{nl},RaBitQfs@4,8``); a ``+2level`` suffix trains an HNSW
coarse quantizer as the automatic rule does (index/ann/coarse.py: two-level spherical
k-means, efSearch 128) instead of faiss's flat k-means and efSearch 16. ``--share-coarse``
trains the coarse centroids once per nlist, so the codes are compared on the same lists.
Per spec and refine depth, nprobe walks up ``--nprobes`` until recall reaches ``--stop``;
rows from ``--time-from`` recall up are timed (batched against flat, single-query p50).
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_common import DISTRIBUTIONS, median_pair  # noqa: E402

from index.ann import coarse  # noqa: E402


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


def load_vectors(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    """(base float16, held-out queries float32, label): from an index directory's stored
    shards (read through index.store) or generated."""
    gen = DISTRIBUTIONS[args.dist]
    xq = gen(args.queries, args.dim, sample_seed=99)
    if args.index_dir is None:
        return gen(args.n, args.dim, sample_seed=1).astype(np.float16), xq, "generated"
    from index.store.directory import IndexDirectory

    directory = IndexDirectory(args.index_dir)
    catalog = directory.catalog(readonly=True)
    store = directory.vector_store(catalog, args.dim)
    ids = catalog.live_ids()[:args.n or None]
    base = np.empty((len(ids), args.dim), np.float16)
    for start in range(0, len(ids), 100_000):
        chunk = ids[start:start + 100_000]
        base[start:start + len(chunk)] = store.get(chunk)
    catalog.close()
    return base, xq, str(args.index_dir)


def as_f32(base16: np.ndarray, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
    out = base16[rows].astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def build(spec: str, base16: np.ndarray, train_n: int, niter: int,
          centroids: dict[tuple[int, bool], np.ndarray] | None = None
          ) -> tuple[faiss.Index, dict]:
    """Train on a seeded sample, add everything in blocks; seconds and list sizes. With
    ``centroids`` (a cache by nlist and quantizer kind) every spec of one nlist shares the
    first one's coarse centroids: the codes are then compared on the same lists, and
    the coarse k-means (most of the training time) runs once."""
    two_level = spec.endswith("+2level")
    factory = spec.removesuffix("+2level")
    dim = base16.shape[1]
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    if hasattr(ivf, "do_polysemous_training"):
        ivf.do_polysemous_training = False
    ivf.cp.niter = niter
    rng = np.random.default_rng(0)
    sample = as_f32(base16, np.sort(rng.choice(len(base16), train_n, replace=False)))
    began = time.perf_counter()
    key = (int(ivf.nlist), two_level)
    if centroids is not None and key in centroids:
        ivf.quantizer.add(centroids[key])
        if two_level:
            coarse.hnsw_of(ivf).efSearch = coarse.QUANTIZER_EF
    elif two_level and not coarse.train_coarse(ivf, sample):
        raise SystemExit(f"{spec}: +2level needs an HNSW coarse quantizer (IVFn_HNSW32,...)")
    index.train(sample)  # only the codes when the quantizer already holds nlist centroids
    if centroids is not None and key not in centroids:
        centroids[key] = ivf.quantizer.reconstruct_n(0, ivf.nlist)
    train_s = time.perf_counter() - began
    began = time.perf_counter()
    for start in range(0, len(base16), 100_000):
        index.add(as_f32(base16, slice(start, start + 100_000)))
    add_s = time.perf_counter() - began
    sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)])
    return index, {"train_s": round(train_s, 1), "add_s": round(add_s, 1),
                   "imbalance": round(float((sizes ** 2).sum() * ivf.nlist
                                            / sizes.sum() ** 2), 2),
                   "code_bytes": int(ivf.code_size), "train_n": train_n}


def searcher(index: faiss.Index, store: np.ndarray, nprobe: int, refine: int, k: int = 10,
             qb: int = 8):
    """Batched search as Searcher does it: k hits at refine 1, else 16*refine candidates
    (the first tier, index/ann/tiers.py) re-ranked exactly from the float16 store."""
    ivf = faiss.extract_index_ivf(index)
    if isinstance(faiss.downcast_index(ivf), (faiss.IndexIVFRaBitQ,
                                             faiss.IndexIVFRaBitQFastScan)):
        params = faiss.IVFRaBitQSearchParameters(nprobe=nprobe, qb=qb)
    else:
        params = faiss.SearchParametersIVF(nprobe=nprobe)
    depth = k if refine == 1 else 16 * refine

    def run(q: np.ndarray) -> np.ndarray:
        _, cand = index.search(q, depth, params=params)
        return cand if refine == 1 else numpy_rerank(store, q, cand, k)

    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="vectors (0: all of --index-dir)")
    ap.add_argument("--index-dir", type=Path, help="read the base vectors from this index")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--dist", choices=sorted(DISTRIBUTIONS), default="clip-cone")
    ap.add_argument("--specs", default="IVF{nl},SQ8")
    ap.add_argument("--nprobes", default="8,16,32,48,64,96,128,192,256")
    ap.add_argument("--refines", default="1,2")
    ap.add_argument("--stop", type=float, default=0.965, help="recall that ends a ladder")
    ap.add_argument("--time-from", type=float, default=0.945, help="time rows from here")
    ap.add_argument("--train", type=int, default=0, help="training sample (0: 64 per list, "
                    "at most 500,000: index/ann/params.train_size)")
    ap.add_argument("--niter", type=int, default=10, help="k-means iterations")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=250, help="queries per timed batch")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--single", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--qb", type=int, default=8, help="RaBitQ query bits (faiss's qb)")
    ap.add_argument("--share-coarse", action="store_true",
                    help="train the coarse centroids once per nlist and reuse them")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    faiss.omp_set_num_threads(args.threads)
    store, xq, source = load_vectors(args)
    n = len(store)
    nl = 2 ** round(np.log2(4 * np.sqrt(n)))
    flat = faiss.IndexFlatIP(args.dim)
    for start in range(0, n, 100_000):
        flat.add(as_f32(store, slice(start, start + 100_000)))
    _, truth = flat.search(xq, 10)
    timed_q = xq[:args.batch]
    base = {"n": n, "dist": args.dist, "source": source, "threads": args.threads}
    print(json.dumps(base), flush=True)
    centroids: dict[tuple[int, bool], np.ndarray] | None = {} if args.share_coarse else None
    with args.out.open("a") as out:
        for template in args.specs.split(";"):
            template, _, own_refines = template.partition("@")
            spec = template.format(nl=nl)
            nlist = int(spec.split("IVF")[1].split(",")[0].split("_")[0])
            train_n = min(n, args.train or min(500_000, max(64 * nlist, 39 * nlist)))
            index, built = build(spec, store, train_n, args.niter, centroids)
            print(json.dumps({"spec": spec, **built}), flush=True)
            for refine in map(int, (own_refines or args.refines).split(",")):
                for nprobe in map(int, args.nprobes.split(",")):
                    if nprobe > nlist:
                        break
                    run = searcher(index, store, nprobe, refine, qb=args.qb)
                    faiss.cvar.indexIVF_stats.reset()
                    found = run(xq)
                    scanned = faiss.cvar.indexIVF_stats.ndis / len(xq)
                    row = {"spec": spec, "nprobe": nprobe, "refine": refine,
                           "recall10": round(recall(found, truth), 4),
                           "scanned": int(scanned), **built, **base}
                    if row["recall10"] >= args.time_from:
                        t_ours, t_flat = median_pair(lambda run=run: run(timed_q),
                                                     lambda: flat.search(timed_q, 10),
                                                     args.repeats)
                        single = []
                        for q in xq[:args.single]:
                            began = time.perf_counter()
                            run(q[None])
                            single.append(time.perf_counter() - began)
                        row.update(batch_qps=round(len(timed_q) / t_ours, 1),
                                   flat_qps=round(len(timed_q) / t_flat, 1),
                                   x_flat=round(t_flat / t_ours, 2),
                                   p50_ms=round(1000 * float(np.median(single)), 3))
                    print(json.dumps(row), flush=True)
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    if row["recall10"] >= args.stop:
                        break
            del index
    return 0


if __name__ == "__main__":
    sys.exit(main())
