"""What one search call takes and returns: plain data without faiss, so a client, a remote
evaluation and the server's request boundary can use it without loading the index code."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from common.errors import VisearchError

MAX_K = 1000
# Most PQ candidates one query may re-rank (k * refine_factor): bounds its time and memory.
MAX_CANDIDATES = 10_000
DEFAULT_K = 10


class InvalidQueryError(VisearchError, ValueError):
    """A query the index cannot answer: wrong dimension, not finite, k out of range..."""


@dataclass(frozen=True)
class SearchParams:
    """Per-call settings; None means the index's default from its manifest."""

    k: int = DEFAULT_K
    nprobe: int | None = None
    refine_factor: int | None = None


@dataclass(frozen=True)
class Hits:
    """Ranked results, best first; ids are -1 (and scores -inf) where fewer than k exist."""

    ids: np.ndarray  # (nq, k) int64
    scores: np.ndarray  # (nq, k) float32

    def row(self, i: int) -> list[tuple[int, float]]:
        return [(int(j), float(s)) for j, s in zip(self.ids[i], self.scores[i], strict=True)
                if j >= 0]
