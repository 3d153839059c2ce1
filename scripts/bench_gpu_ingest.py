"""The GPU ingest path measured: JPEG files to stored vectors, and the model alone.

* end to end: `visearch build`'s ingest stage (read + hash in workers, decode, resize,
  embed, write shards and catalog rows) over the same JPEG files with ``--decode gpu``
  (nvJPEG, batched tensor preprocessing, fp16 tower) and ``--decode cpu`` (Pillow in the
  workers), same model, batch and worker count; images/s = embedded / ingest seconds.
  The index is exact (Flat), so no training time is mixed in.
* model alone: the image tower on device-resident random pixels, fp16 by autocast, by
  fp16 weights, and by fp16 weights under torch.compile (CUDA graphs), with the FLOPs of
  one image counted by torch, so images/s converts to TFLOP/s.

ViT-B-32 here has random weights (``--pretrained none``): speed only.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from embedder import DecodeLimits, EmbedderConfig
from embedder.embedder import Embedder, load_embedder
from index.ann.params import IndexOverrides
from index.build.pipeline import BuildConfig, BuildStages, run_build
from index.build.publish import IndexingOptions
from index.build.stages import LocalEmbedder, LocalLister, shard_writer

TARGET_IMAGES_PER_S = 5000  # end to end on one H100 (issue 12)


def photo(seed: int, width: int, height: int) -> Image.Image:
    """A photo-like JPEG source: smooth gradient, blocks, and sensor-like noise, so the
    entropy coder and IDCT do real work (flat synthetic images decode unrealistically fast)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 255, 3) + x[..., None] * rng.uniform(-0.2, 0.2, 3) \
        + y[..., None] * rng.uniform(-0.2, 0.2, 3)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width - 32)), int(rng.integers(0, height - 32))
        base[y0:y0 + int(rng.integers(16, height // 2)),
             x0:x0 + int(rng.integers(16, width // 2))] = rng.uniform(0, 255, 3)
    base += rng.normal(0, 12, base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def _write(args: tuple[Path, int, int, int]) -> int:
    path, seed, width, height = args
    if not path.exists():
        photo(seed, width, height).save(path, "JPEG", quality=90)
    return path.stat().st_size


def write_photos(folder: Path, count: int, width: int, height: int) -> dict[str, Any]:
    """``count`` distinct JPEGs, written by one process per core."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder / f"p{i:06d}.jpg", 1_000_000 + i, width, height) for i in range(count)]
    start = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        sizes = list(pool.map(_write, jobs, chunksize=64))
    return {"count": count, "width": width, "height": height,
            "mean_kib": round(float(np.mean(sizes)) / 1024, 1),
            "seconds_to_write": round(time.perf_counter() - start, 1)}


def ingest_rate(stage: LocalEmbedder, cfg: EmbedderConfig, folder: Path, work: Path
                ) -> dict[str, Any]:
    """One build over ``folder`` with the given embed stage (kept across builds, so a
    compiled tower compiles once, in the warm-up build)."""
    out = work / f"ingest-{stage.decode}.idx"
    shutil.rmtree(out, ignore_errors=True)
    build = BuildConfig(inputs=(str(folder),), out=out, embedder=cfg,
                        batch_size=stage.batch_size, workers=stage.workers,
                        decode=stage.decode, compile=stage.compile,
                        indexing=IndexingOptions(progress=False,
                                                 overrides=IndexOverrides(spec="Flat")))
    stages = BuildStages(LocalLister(), lambda: stage, shard_writer("float16", 8192))
    report = run_build(build, stages=stages)
    shutil.rmtree(out, ignore_errors=True)
    return {"decode": stage.decode, "compile": stage.compile,
            "embedded": report.ingest.embedded, "failed": len(report.failed),
            "ingest_seconds": round(report.ingest.seconds, 2),
            "images_per_s": report.ingest.embedded / report.ingest.seconds,
            "build_seconds": round(report.seconds, 2)}


def end_to_end(model: str, device: str, folder: Path, warm: Path, work: Path, *, batch: int,
               workers: int, compile: bool) -> Iterator[dict[str, Any]]:
    """One result per decode mode, as each finishes."""
    cfg = EmbedderConfig(model=model, pretrained=None, device=device)
    embedder = load_embedder(cfg)
    # a smoke run on the CPU has no GPU path: "auto" stands in for it there
    gpu = "gpu" if embedder.device.type == "cuda" else "auto"
    modes = [(gpu, False), ("cpu", False)] + ([(gpu, True)] if compile else [])
    for decode, compiled in modes:
        stage = LocalEmbedder(embedder, batch, workers, DecodeLimits(), decode, compiled)
        # a small build first: CUDA, nvJPEG and (when asked) torch.compile warm up there
        ingest_rate(stage, cfg, warm, work)
        yield ingest_rate(stage, cfg, folder, work)


def image_flops(embedder: Embedder) -> float:
    """Forward FLOPs of one image through the image tower, as torch counts them."""
    from torch.utils.flop_counter import FlopCounterMode

    size = embedder.image_size
    pixels = torch.zeros((1, 3, size, size), device=embedder.device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), embedder.autocast(), counter:
        embedder.model.encode_image(pixels)  # type: ignore[operator]
    return float(counter.get_total_flops())


def model_alone(model: str, device: str, *, batch: int, seconds: float, compile: bool
                ) -> dict[str, Any]:
    from embedder.gpu_pipeline import HalfImageEncoder

    embedder = load_embedder(EmbedderConfig(model=model, pretrained=None, device=device))
    size = embedder.image_size
    pixels = torch.randn((batch, 3, size, size), device=embedder.device)
    flops = image_flops(embedder)
    label = "fp32" if embedder.precision == "fp32" else f"{embedder.precision} autocast"
    encoders: list[tuple[str, Any]] = [(label, embedder.encode_images)]
    if embedder.device.type == "cuda":
        encoders.append(("fp16 weights", HalfImageEncoder(embedder)))
        if compile:
            encoders.append(("fp16 weights, torch.compile", HalfImageEncoder(embedder, True)))
    rows = []
    for name, encode in encoders:
        start = time.perf_counter()
        for _ in range(3):  # warm-up (and compilation)
            encode(pixels)
        warm_s = time.perf_counter() - start
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            encode(pixels)  # returns numpy: synchronised
            done += batch
        rate = done / (time.perf_counter() - start)
        rows.append({"encoder": name, "batch": batch, "images_per_s": rate,
                     "tflops": rate * flops / 1e12, "warmup_seconds": round(warm_s, 1)})
    return {"model": model, "gflops_per_image": flops / 1e9, "rows": rows}
