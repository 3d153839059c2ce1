"""The GPU path: fp16 embedding, faiss GPU against CPU, and end-to-end query latency.

Runs only where CUDA is visible; elsewhere the section says so and how to run it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch
from bench_common import Section, clip_like, table

from index.ann import faiss_index as ann
from index.build.publish import IndexingOptions
from index.build.vector_import import import_vectors
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory

COMMANDS = """\
```
make test PYTEST_ARGS="-m gpu -v"          # the gpu-marked tests (skipped without CUDA)
.venv/bin/python scripts/bench.py --device cuda --out docs/benchmarks.md
```"""


def unavailable() -> Section:
    return Section("GPU path", "\n\n".join([
        "**No GPU was available for this run**, so no GPU numbers are reported. The CUDA "
        "code ships and is covered by tests marked `gpu` that skip per test without CUDA: "
        "CUDA embeddings equal CPU ones within fp16 tolerance "
        "(`tests/embedder/test_model.py::test_cuda_embeddings_match_cpu`), and a faiss GPU "
        "build trains and adds with the recall of the CPU build "
        "(`tests/index/ann/test_ann.py::test_gpu_build_matches_cpu_recall`, which also needs a "
        "faiss with GPU support: the `gpu` extra or `Dockerfile.gpu`). On a machine with an "
        "NVIDIA GPU, run:", COMMANDS,
        "and this section fills with the card's name, fp16 embedding throughput (tiny and "
        "ViT-B-32), faiss GPU train/add/search against the CPU on the same vectors, and GPU "
        "against CPU end-to-end query latency.",
    ]))


def faiss_gpu_vs_cpu(n: int, dim: int, work: Path) -> list[list[object]]:
    if ann.gpu_count() == 0:
        return [["faiss GPU", "this faiss build has no GPU support (install the gpu extra)"]]
    vectors = clip_like(n, dim, sample_seed=3)
    keys = [f"/g/{i}" for i in range(n)]
    rows: list[list[object]] = []
    for label, use_gpu in (("CPU", False), ("GPU", True)):
        directory = IndexDirectory(work / f"faiss-{label}.idx")
        shutil.rmtree(directory.path, ignore_errors=True)
        result = import_vectors(directory, vectors, keys, precomputed_identity(dim),
                                IndexingOptions(progress=False, use_gpu=use_gpu))
        rows.append([f"train + add {n:,} ({result.manifest.index.spec})", label,
                     result.faiss_device, result.seconds])
    return rows


def run(embed_section: Section, grpc_rows: dict[str, list[dict]], work: Path, n: int,
        dim: int) -> Section:
    card = torch.cuda.get_device_name(0)
    embed_rows = [[model, d["device"], d["precision"], d["batch"], d["pipeline_images_per_s"],
                   d["raw_images_per_s"]] for model, d in embed_section.data.items()
                  if model != "decode"]
    faiss_rows = faiss_gpu_vs_cpu(n, dim, work)
    latency_rows = [[device, r["kind"], r["grpc_p50"], r["grpc_p99"], r["grpc_qps"]]
                    for device, rows in grpc_rows.items() for r in rows]
    return Section("GPU path", "\n\n".join([
        f"Card: **{card}**, torch {torch.__version__}, CUDA {torch.version.cuda}, measured "
        f"{time.strftime('%Y-%m-%d')}. Commands:", COMMANDS,
        "fp16 autocast embedding throughput (pipeline from JPEG files, and the raw loop):",
        table(["model", "device", "dtype", "batch", "pipeline img/s", "raw img/s"], embed_rows),
        "faiss training and adding on the same vectors:",
        table(["work", "asked", "ran on", "seconds"], faiss_rows),
        "End-to-end query latency through gRPC, server on each device:",
        table(["server device", "queries", "p50 ms", "p99 ms", "QPS"], latency_rows),
    ]), {"card": card, "faiss": faiss_rows, "latency": latency_rows,
         "embedding": embed_rows, "vectors_for_faiss": int(np.int64(n))})
