"""Deterministic clustered vectors, like embeddings of a corpus with visual groups."""

from __future__ import annotations

import numpy as np


def clustered(n: int, dim: int = 64, clusters: int = 100, spread: float = 0.35,
              seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    labels = rng.integers(0, clusters, n)
    points = centres[labels] + spread * rng.standard_normal((n, dim)).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def keys(n: int, start: int = 0) -> list[str]:
    """Catalog keys shaped like absolute paths, as labels files name them."""
    return [f"/synthetic/{i:07d}" for i in range(start, start + n)]
