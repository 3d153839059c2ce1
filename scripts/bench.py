#!/usr/bin/env python3
"""Benchmarks, each against the raw library doing the same work in the same run.

Writes docs/benchmarks.md (with the machine described), its plots and a JSON file
of every number. `--quick` runs every benchmark at a toy size (the test suite
does this); the committed document comes from a full run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_common import Section, clip_like  # noqa: E402

from common.machine import describe_machine  # noqa: E402

FULL = {"sizes": [10_000, 100_000, 1_000_000], "dim": 512, "queries": 1000, "single": 200,
        "repeats": 5, "grpc_queries": 300, "image_counts": [250, 1000, 4000],
        "models": [("tiny", None, 512), ("ViT-B-32", None, 96)], "nprobes": [1, 4, 16, 64, 256],
        "recall_sizes": [100_000, 1_000_000], "recall_single": 100, "recall_repeats": 3,
        "recall_batch": 250}
QUICK = {"sizes": [3_000, 12_000], "dim": 64, "queries": 200, "single": 30, "repeats": 2,
         "grpc_queries": 25, "image_counts": [16, 32], "models": [("tiny", None, 24)],
         "nprobes": [1, 16], "recall_sizes": [12_000], "recall_single": 10,
         "recall_repeats": 2, "recall_batch": 200}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes, for a smoke test")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--work", type=Path, help="scratch directory (default: a temporary one)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda for the model")
    parser.add_argument("--max-n", type=int, help="leave out vector counts above this")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.max_n:
        plan = {**plan, "sizes": [n for n in plan["sizes"] if n <= args.max_n]}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="visearch-bench-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        sections = run_all(plan, work, args.out.parent, args.device)
    write_report(args, sections, time.perf_counter() - started)
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


def run_all(plan: dict, work: Path, docs: Path, device: str) -> list[Section]:
    import bench_embed
    import bench_gpu
    import bench_grpc
    import bench_scale
    import bench_search

    from embedder import EmbedderConfig
    from embedder.embedder import load_embedder

    docs.mkdir(parents=True, exist_ok=True)
    queries = clip_like(plan["queries"], plan["dim"], sample_seed=99)  # same clusters, unseen
    log(f"scaling with N: {plan['sizes']}")
    scale, dirs = bench_scale.run_vectors(plan["sizes"], plan["dim"], work, queries,
                                          plan["single"])
    largest = dirs[max(dirs)]
    log("search against faiss")
    nlist = largest.manifest().index.nlist or 1
    search = bench_search.run(largest, queries, [p for p in plan["nprobes"] if p <= nlist],
                              plan["repeats"], plan["single"])
    search.plots.append(bench_search.search_plot(search, docs / "bench_search.png"))
    sizes = bench_search.bytes_per_vector(largest)
    log("recall by default, against a flat scan")
    recall = bench_search.run_recall(plan, work, plan["queries"],
                                     reuse={("clustered", n): d for n, d in dirs.items()})
    log("embedding pipeline")
    embed = bench_embed.run(plan["models"], device, batch=32,
                            workers=max(1, min(4, (torch.get_num_threads()))),
                            repeats=max(1, plan["repeats"] - 2), work=work)
    log("image-count scaling")
    tiny = load_embedder(EmbedderConfig(model="tiny", device=device))
    images = bench_scale.run_images(plan["image_counts"], tiny, work)
    scale.plots.append(bench_scale.scaling_plot(scale, images, docs / "bench_scaling.png"))
    log("gRPC against in-process")
    image_index = work / f"scale-images-{plan['image_counts'][0]}.idx"
    image_files = sorted((work / "jpegs-scale").glob("*.jpg"))[:50]
    grpc = bench_grpc.run(dirs[min(dirs)].path, image_index, image_files, plan["grpc_queries"],
                          threads=8, work=work, device="cpu")
    sections = [embed, search, recall, grpc, sizes, scale, images]
    if torch.cuda.is_available():
        log("GPU path")
        on_gpu = bench_grpc.run(dirs[min(dirs)].path, image_index, image_files,
                                plan["grpc_queries"], threads=8, work=work, device="cuda")
        sections.append(bench_gpu.run(embed, {"cpu": grpc.data["rows"],
                                              "cuda": on_gpu.data["rows"]},
                                      work, max(plan["sizes"]), plan["dim"]))
    else:
        sections.append(bench_gpu.unavailable())
    return sections


def write_report(args: argparse.Namespace, sections: list[Section], elapsed: float) -> None:
    machine = describe_machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    command = "python scripts/bench.py" + (" --quick" if args.quick else "") + \
        (f" --max-n {args.max_n}" if args.max_n else "") + \
        (f" --device {args.device}" if args.device != "auto" else "")
    head = [
        "# Benchmarks",
        "",
        "Generated by `scripts/bench.py`; do not edit by hand. Every speed is measured side "
        "by side with the raw library doing the same work in the same run, reported as "
        "medians and ratios, because these machines are shared and noisy: read the ratios, "
        "not the absolute numbers.",
        "",
        f"- date: {dt.date.today().isoformat()}, total {elapsed / 60:.1f} min",
        f"- command: `{command}`",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores; GPU: {gpu}",
        f"- torch {torch.__version__}, faiss {machine['faiss']}, Python {machine['python']}, "
        f"numpy {np.__version__}",
        "- models: `tiny` is the shipped untrained config and ViT-B-32 runs with random "
        "weights: the throughput of an architecture does not depend on its weights, its "
        "results would; no result quality is reported here",
    ]
    body = []
    for number, section in enumerate(sections, 1):
        body += ["", f"## {number}. {section.title}", "", section.markdown]
        body += [f"\n![{section.title}]({plot.name})" for plot in section.plots]
    args.out.write_text("\n".join(head + body) + "\n")
    data = {s.title: s.data for s in sections}
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=2, default=str) + "\n")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
