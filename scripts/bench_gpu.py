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
.venv/bin/python scripts/bench_gpu.py --out gpu-out   # GPU ingest: JPEG files -> vectors
```"""

# The lent GPU machine (no network, no open_clip or faiss): one call of at most 8 minutes.
DEVICE_CHECK = """\
```
scripts/gpu_wheels.sh   # here: .whl/ (open-clip-torch, faiss-cpu, ...; ~28 MiB)
# device tool:  run  command="bash scripts/gpu_check.sh"  carry=[".whl"]  timeout_s=480
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
        "**GPU ingest path (not measured: no GPU was lent).** `visearch build --decode auto` "
        "(the default) decodes JPEGs on the GPU when the model runs on CUDA: workers only "
        "read and hash files, nvJPEG decodes each batch, resize/crop/normalise run as "
        "batched tensor ops and ViT-B-32 runs with fp16 weights (`--compile` adds "
        "torch.compile); other files and JPEGs nvJPEG refuses take the CPU path per file. "
        "Target: >= 5,000 images/s end to end (JPEG files to stored vectors) on one H100. "
        "The batched preprocessing matches open_clip's transform and the whole path equals "
        "the CPU decode path when run on the CPU (`tests/embedder/test_gpu_pipeline.py`); "
        "its nvJPEG tests are marked `gpu`. On the lent GPU machine, one call of at most 8 "
        "minutes runs those tests and `scripts/bench_gpu.py` (images/s with GPU vs CPU "
        "decode, the model alone in fp16 with and without torch.compile, in TFLOP/s) and "
        "writes `gpu_bench.md`, the snippet for this section:", DEVICE_CHECK,
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


# --- `python scripts/bench_gpu.py`: the GPU ingest path alone (scripts/gpu_check.sh) ---------

def ingest_markdown(data: dict) -> str:
    """The GPU ingest results as a docs/benchmarks.md snippet."""
    import bench_gpu_ingest as ingest

    photos = data["photos"]
    runs = data["end_to_end"]
    cpu = next(r["images_per_s"] for r in runs if r["decode"] == "cpu")
    e2e = [[r["decode"] + (" + compile" if r["compile"] else ""), r["embedded"], r["failed"],
            r["ingest_seconds"], r["images_per_s"], r["images_per_s"] / cpu,
            ("met" if r["images_per_s"] >= ingest.TARGET_IMAGES_PER_S else "**not met**")
            if r["decode"] != "cpu" else "-"] for r in runs]
    alone = data["model_alone"]
    model_rows = [[r["encoder"], r["batch"], r["images_per_s"], r["tflops"],
                   r["warmup_seconds"]] for r in alone["rows"]]
    return "\n\n".join([
        f"Device: **{data['device']}**, torch {data['torch']}, CUDA {data['cuda']}, "
        f"{data['cores']} CPU cores, measured {data['date']} by `scripts/gpu_check.sh`. "
        f"{data['model']} with **random weights** (speed only).",
        f"End to end, JPEG files to stored vectors (`visearch build`'s ingest stage, exact "
        f"index so no training): {photos['count']:,} distinct photo-like JPEGs of "
        f"{photos['width']}x{photos['height']} px, {photos['mean_kib']} KiB on average, in "
        f"the page cache; batch {data['batch']}, {data['workers']} read/decode workers. "
        f"Target: >= {ingest.TARGET_IMAGES_PER_S:,} images/s with GPU decode.",
        table(["decode", "embedded", "failed", "ingest s", "images/s", "x CPU decode",
               "target"], e2e),
        f"Model alone on device-resident pixels ({alone['gflops_per_image']:.3g} GFLOP per "
        f"image as torch counts it):",
        table(["encoder", "batch", "images/s", "TFLOP/s", "warm-up s"], model_rows),
    ])


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import os
    import tempfile

    import bench_gpu_ingest as ingest

    parser = argparse.ArgumentParser(description="GPU ingest benchmark: JPEG files to stored "
                                     "vectors with GPU vs CPU decode, and the model alone")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")),
                        help="folder for gpu_bench.json and gpu_bench.md (default: $OUT or .)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run")
    parser.add_argument("--model", default="ViT-B-32", help="open_clip model (random weights)")
    parser.add_argument("--images", type=int, default=20_000, help="JPEG files (20000)")
    parser.add_argument("--size", default="800x600", help="their width x height (800x600)")
    parser.add_argument("--batch", type=int, default=256, help="model batch (256)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="read/decode worker processes (one per core)")
    parser.add_argument("--model-seconds", type=float, default=5.0,
                        help="seconds per model-alone measurement (5)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure torch.compile (CUDA only; default: yes)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    compile_ = args.compile and args.device.startswith("cuda")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    args.out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available() and args.device.startswith("cuda")
    data: dict = {
        "device": torch.cuda.get_device_name(0) if cuda else "CPU", "torch": torch.__version__,
        "cuda": torch.version.cuda, "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
        "model": args.model, "batch": args.batch, "workers": args.workers,
    }
    data["photos"] = ingest.write_photos(work / "photos", args.images, width, height)
    ingest.write_photos(work / "warm", min(args.images, 4 * args.batch), width, height)
    data["model_alone"] = ingest.model_alone(args.model, args.device, batch=args.batch,
                                             seconds=args.model_seconds, compile=compile_)
    (args.out / "gpu_bench.json").write_text(json.dumps(data, indent=2))  # partial results
    data["end_to_end"] = []
    for run_ in ingest.end_to_end(args.model, args.device, work / "photos", work / "warm",
                                  work, batch=args.batch, workers=args.workers,
                                  compile=compile_):
        data["end_to_end"].append(run_)
        (args.out / "gpu_bench.json").write_text(json.dumps(data, indent=2))
    markdown = ingest_markdown(data)
    (args.out / "gpu_bench.md").write_text(markdown + "\n")
    print(markdown)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
