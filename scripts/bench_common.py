"""Shared pieces of the benchmarks: timing by medians, tables, synthetic embeddings."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Section:
    """One benchmark's part of docs/benchmarks.md, plus its raw numbers for JSON."""

    title: str
    markdown: str
    data: dict[str, Any] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_pair(ours: Callable[[], object], raw: Callable[[], object], repeats: int
                ) -> tuple[float, float]:
    """Median seconds of each, runs interleaved so machine noise hits both alike."""
    a, b = [], []
    for _ in range(repeats):
        a.append(seconds(ours))
        b.append(seconds(raw))
    return statistics.median(a), statistics.median(b)


def latencies_ms(call: Callable[[Any], object], items: Sequence[Any], warmup: int = 5
                 ) -> np.ndarray:
    for item in items[:warmup]:
        call(item)
    out = []
    for item in items:
        start = time.perf_counter()
        call(item)
        out.append((time.perf_counter() - start) * 1000)
    return np.array(out)


def pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q))


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def clip_like(n: int, dim: int, sample_seed: int, world_seed: int = 1, centres: int = 2000,
              latent: int = 64) -> np.ndarray:
    """Unit vectors shaped like image embeddings: clusters of uneven size and spread in a
    64-dimensional latent space, projected to ``dim`` dimensions with a little noise.

    ``world_seed`` fixes the clusters and the projection; ``sample_seed`` draws points from
    them, so queries drawn with another sample seed come from the same distribution.
    """
    world = np.random.default_rng(world_seed)
    projection = world.standard_normal((latent, dim)).astype(np.float32) / np.sqrt(latent)
    base = world.standard_normal((centres, latent)).astype(np.float32)
    weights = world.pareto(1.5, centres) + 1
    spread = world.uniform(0.2, 0.6, centres).astype(np.float32)
    rng = np.random.default_rng(sample_seed)
    labels = rng.choice(centres, size=n, p=weights / weights.sum())
    z = base[labels] + spread[labels, None] * rng.standard_normal((n, latent)).astype(np.float32)
    points = z @ projection + 0.05 * rng.standard_normal((n, dim)).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points


def clip_cone(n: int, dim: int, sample_seed: int, world_seed: int = 2, centres: int = 4000,
              latent: int = 48, mean_weight: float = 1.0) -> np.ndarray:
    """Unit vectors shaped like CLIP image embeddings: a low intrinsic dimension (``latent``),
    every vector inside a narrow cone around one shared mean direction (CLIP embeddings of
    photos have pairwise cosines around 0.5, not 0), and heavy-tailed (Pareto 1.1) cluster
    sizes, with clusters of uneven spread and a little isotropic noise.

    The cone is what makes PQ hard: the shared component is the same for every vector,
    so neighbours differ only in a small residual the codes must resolve.
    """
    world = np.random.default_rng(world_seed)
    projection = world.standard_normal((latent, dim)).astype(np.float32) / np.sqrt(dim)
    mean = world.standard_normal(dim).astype(np.float32)
    mean /= np.linalg.norm(mean)
    base = world.standard_normal((centres, latent)).astype(np.float32) * 0.8
    weights = world.pareto(1.1, centres) + 1
    spread = world.uniform(0.25, 0.7, centres).astype(np.float32)
    rng = np.random.default_rng(sample_seed)
    labels = rng.choice(centres, size=n, p=weights / weights.sum())
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):  # blocks: 1M x 512 float32 is 2 GB, keep one copy
        part = labels[start:start + 100_000]
        z = base[part] + spread[part, None] * rng.standard_normal(
            (len(part), latent)).astype(np.float32)
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        block = mean_weight * mean + z @ projection \
            + 0.02 * rng.standard_normal((len(part), dim)).astype(np.float32)
        out[start:start + len(part)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


DISTRIBUTIONS = {"clustered": clip_like, "clip-cone": clip_cone}


def paired_latencies_ms(ours: Callable[[Any], object], raw: Callable[[Any], object],
                        items: Sequence[Any], warmup: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Per-item latencies of both, alternating which runs first so drift and cache warmth
    favour neither."""
    for item in items[:warmup]:
        ours(item)
        raw(item)
    a, b = [], []
    for i, item in enumerate(items):
        pair = ((ours, a), (raw, b)) if i % 2 == 0 else ((raw, b), (ours, a))
        for call, out in pair:
            start = time.perf_counter()
            call(item)
            out.append((time.perf_counter() - start) * 1000)
    return np.array(a), np.array(b)
