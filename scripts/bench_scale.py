"""Benchmark 5: how build time and query latency grow with N, and build time with images."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from bench_common import Section, clip_like, latencies_ms, pct, seconds, table
from bench_embed import write_jpegs

from embedder import EmbedderConfig
from embedder.embedder import Embedder
from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.build.pipeline import BuildConfig, run_build
from index.build.publish import IndexingOptions
from index.build.vector_import import import_vectors
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory


def build_synthetic(n: int, dim: int, work: Path) -> tuple[IndexDirectory, dict[str, float]]:
    directory = IndexDirectory(work / f"synthetic-{n}.idx")
    shutil.rmtree(directory.path, ignore_errors=True)
    vectors = clip_like(n, dim, sample_seed=1)
    keys = [f"/synthetic/{i:08d}" for i in range(n)]
    start = time.perf_counter()
    result = import_vectors(directory, vectors, keys, precomputed_identity(dim),
                            IndexingOptions(progress=False))
    total = time.perf_counter() - start
    return directory, {"n": n, "build_s": total, "index_s": result.seconds,
                       "store_s": total - result.seconds, "spec": result.manifest.index.spec}


def query_costs(directory: IndexDirectory, queries: np.ndarray, single: int) -> dict[str, float]:
    searcher = Searcher(directory)
    params = SearchParams(k=10)  # index defaults: nprobe and exact re-ranking
    lat = latencies_ms(lambda q: searcher.search(q[None], params), queries[:single])
    batch = seconds(lambda: searcher.search(queries, params))
    return {"p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "batch_qps": len(queries) / batch,
            "nprobe": searcher.manifest.index.default_nprobe or 0}


def run_vectors(sizes: list[int], dim: int, work: Path, queries: np.ndarray, single: int
                ) -> tuple[Section, dict[int, IndexDirectory]]:
    rows, data, dirs = [], [], {}
    for n in sizes:
        directory, build = build_synthetic(n, dim, work)
        costs = query_costs(directory, queries, single)
        dirs[n] = directory
        data.append({**build, **costs})
        rows.append([n, build["spec"], build["store_s"], build["index_s"], costs["nprobe"],
                     costs["p50_ms"], costs["p99_ms"], costs["batch_qps"]])
    markdown = "\n\n".join([
        f"Synthetic CLIP-like unit vectors ({dim} dimensions, uneven clusters), index chosen "
        f"by the automatic rule. *store* writes the raw float16 shards and catalog rows; "
        f"*index* trains on the sample and adds every vector. Queries: {len(queries)} held-out "
        f"vectors, k=10 at the manifest's defaults (nprobe and refine tuned by the build).",
        table(["N", "index", "store s", "train+add s", "nprobe", "p50 ms (1 query)",
               "p99 ms", "batch QPS"], rows),
    ])
    return Section("Scaling with N", markdown, {"rows": data}), dirs


def run_images(counts: list[int], embedder: Embedder, work: Path) -> Section:
    rows, data = [], []
    for count in counts:
        folder = work / f"scale-images-{count}"
        files = write_jpegs(work / "jpegs-scale", count, size=320)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for f in files:
            (folder / f.name).symlink_to(f)
        out = work / f"scale-images-{count}.idx"
        shutil.rmtree(out, ignore_errors=True)
        report = run_build(BuildConfig(inputs=(str(folder),), out=out,
                                       embedder=EmbedderConfig(model="tiny"),
                                       indexing=IndexingOptions(progress=False)),
                           embedder=embedder)
        rate = report.ingest.embedded / report.ingest.seconds
        data.append({"images": count, "seconds": report.seconds, "images_per_s": rate})
        rows.append([count, report.seconds, rate, report.indexing.manifest.index.spec])
    markdown = "\n\n".join([
        "`visearch build` over 320x320 JPEGs with the untrained tiny model (speed only), "
        "default workers; seconds from start to published index.",
        table(["images", "build s", "embed images/s", "index"], rows),
    ])
    return Section("Scaling with the image count", markdown, {"rows": data})


def scaling_plot(vectors: Section, images: Section, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    rows = vectors.data["rows"]
    ns = [r["n"] for r in rows]
    left.loglog(ns, [r["build_s"] for r in rows], "o-", label="build (store + train + add)")
    left.loglog(ns, [r["p50_ms"] / 1000 for r in rows], "s-", label="query p50")
    left.set_xlabel("vectors N")
    left.set_ylabel("seconds")
    left.set_title("synthetic vectors", fontsize=10)
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    img = images.data["rows"]
    right.plot([r["images"] for r in img], [r["seconds"] for r in img], "o-")
    right.set_xlabel("images")
    right.set_ylabel("build seconds")
    right.set_title("images, tiny model (untrained)", fontsize=10)
    right.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
