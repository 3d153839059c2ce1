"""Benchmarks 2 and 4: search QPS against faiss called directly, and bytes per vector."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
from bench_common import Section, median_pair, paired_latencies_ms, seconds, table

from evaluation.fidelity import exact_neighbours
from evaluation.metrics import k_recall_at_k
from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.store.directory import IndexDirectory


def run(directory: IndexDirectory, queries: np.ndarray, nprobes: list[int], repeats: int,
        single: int, k: int = 10) -> Section:
    searcher = Searcher(directory)
    raw = faiss.read_index(str(directory.index_path(searcher.manifest)))  # the same file
    truth = exact_neighbours(searcher.store, searcher.catalog.live_ids(), queries, k)
    rows, data = [], []
    for nprobe in nprobes:
        params = SearchParams(k=k, nprobe=nprobe, refine_factor=1)
        raw_params = faiss.SearchParametersIVF(nprobe=nprobe)
        ours_hits = searcher.search(queries, params)
        _, raw_ids = raw.search(queries, k, params=raw_params)
        assert (ours_hits.ids == raw_ids).all(), "project and faiss disagree"
        batch_ours, batch_raw = median_pair(lambda: searcher.search(queries, params),
                                            lambda: raw.search(queries, k, params=raw_params),
                                            repeats)
        lat_ours, lat_raw = paired_latencies_ms(
            lambda q: searcher.search(q[None], params),
            lambda q: raw.search(q[None], k, params=raw_params), queries[:single])
        refine_params = SearchParams(k=k, nprobe=nprobe, refine_factor=4)
        refined = searcher.search(queries, refine_params)
        batch_refined = statistics.median(
            seconds(lambda: searcher.search(queries, refine_params)) for _ in range(repeats))
        row = {
            "nprobe": nprobe,
            "recall_at_10": k_recall_at_k(ours_hits.ids, truth, k),
            "recall_at_10_refine4": k_recall_at_k(refined.ids, truth, k),
            "batch_qps": len(queries) / batch_ours, "raw_batch_qps": len(queries) / batch_raw,
            "batch_qps_refine4": len(queries) / batch_refined,
            "single_qps": 1000 / float(np.median(lat_ours)),
            "raw_single_qps": 1000 / float(np.median(lat_raw)),
        }
        row["batch_ratio"] = row["batch_qps"] / row["raw_batch_qps"]
        row["single_ratio"] = row["single_qps"] / row["raw_single_qps"]
        data.append(row)
        rows.append([nprobe, row["recall_at_10"], row["batch_qps"], row["raw_batch_qps"],
                     row["batch_ratio"], row["single_qps"], row["raw_single_qps"],
                     row["single_ratio"], row["recall_at_10_refine4"], row["batch_qps_refine4"]])
    m = searcher.manifest
    markdown = "\n\n".join([
        f"{searcher.ntotal:,} vectors of {m.dim} dimensions in `{m.index.spec}`; {len(queries)} "
        f"held-out queries in one batch, {single} one at a time (medians of {repeats} batch "
        f"runs; single-query QPS from the median latency); faiss OpenMP threads "
        f"{faiss.omp_get_max_threads()}. *ours* is `Searcher.search` (validation, "
        f"normalisation, per-call `SearchParametersIVF`), *faiss* is `index.search` on the same "
        f"index file with the same parameters; both return identical ids. Recall is "
        f"10-recall@10 against exact search; the refine column re-ranks 40 PQ candidates "
        f"with the stored vectors (our default). Target: ratio >= 0.9.",
        table(["nprobe", "recall@10", "batch QPS ours", "batch QPS faiss", "ratio",
               "1-query QPS ours", "1-query QPS faiss", "ratio", "recall@10 refine 4",
               "batch QPS refine 4"], rows),
    ])
    return Section("Index search", markdown, {"rows": data, "spec": m.index.spec,
                                              "vectors": searcher.ntotal})


MEASURE_RSS = """
import json, sys, faiss
def rss_kib():
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0])
before = rss_kib()
index = faiss.read_index(sys.argv[1])
print(json.dumps({"rss_kib": rss_kib() - before, "ntotal": index.ntotal}))
"""


def bytes_per_vector(directory: IndexDirectory) -> Section:
    """Disk and RAM per vector, next to the PQ code size plus the 8-byte id."""
    manifest = directory.manifest()
    index_file = directory.index_path(manifest)
    result = json.loads(subprocess.run([sys.executable, "-c", MEASURE_RSS, str(index_file)],
                                       capture_output=True, text=True, check=True).stdout)
    n = result["ntotal"]
    code = (manifest.index.pq_m or 0) * (manifest.index.nbits or 8) // 8
    vectors_bytes = sum(p.stat().st_size for p in directory.vectors_dir.glob("*.npy"))
    data = {
        "vectors": n, "pq_code_plus_id": code + 8,
        "index_file": index_file.stat().st_size / n,
        "index_ram": result["rss_kib"] * 1024 / n,
        "raw_vectors_file": vectors_bytes / n,
        "catalog_file": directory.catalog_path.stat().st_size / n,
    }
    rows = [["PQ code + int64 id (theory)", data["pq_code_plus_id"]],
            ["index file on disk", data["index_file"]],
            ["index in RAM (RSS growth on load)", data["index_ram"]],
            ["raw vectors on disk (float16, memory-mapped)", data["raw_vectors_file"]],
            ["catalog (SQLite) on disk", data["catalog_file"]]]
    markdown = "\n\n".join([
        f"`{manifest.index.spec}` over {n:,} vectors of {manifest.dim} dimensions.",
        table(["what", "bytes per vector"], rows),
        "The raw vectors are only read for re-ranking (4k rows per query) and evaluation; "
        "they stay on disk, paged in by the OS as touched.",
    ])
    return Section("Bytes per vector", markdown, data)


def search_plot(section: Section, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = section.data["rows"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot([r["batch_qps"] for r in rows], [r["recall_at_10"] for r in rows], "o-",
            label="visearch, batch")
    ax.plot([r["raw_batch_qps"] for r in rows], [r["recall_at_10"] for r in rows], "x--",
            label="faiss direct, batch")
    ax.plot([r["single_qps"] for r in rows], [r["recall_at_10"] for r in rows], "s-",
            label="visearch, one query per call")
    ax.plot([r["batch_qps_refine4"] for r in rows], [r["recall_at_10_refine4"] for r in rows],
            "^:", label="visearch, refine 4, batch")
    for r in rows:
        ax.annotate(str(r["nprobe"]), (r["batch_qps"], r["recall_at_10"]), fontsize=8,
                    textcoords="offset points", xytext=(4, -10))
    ax.set_xscale("log")
    ax.set_xlabel("queries per second")
    ax.set_ylabel("10-recall@10")
    ax.set_title(f"{section.data['spec']}, {section.data['vectors']:,} vectors (labels: nprobe)",
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
