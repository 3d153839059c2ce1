"""An HNSW coarse quantizer (`--index-spec IVF16384_HNSW32,SQ8`): two-level spherical k-means.

Many lists (16*sqrt(N) rather than the automatic 4*sqrt(N)) cut the codes a query scans;
a flat k-means over the training sample then costs nlist x sample x dim per iteration,
and two levels ~2*sqrt(nlist) instead: k-means into sqrt(nlist) groups, then each group
split into its share of the lists (shares in proportion to the group's size, as
faiss.contrib.clustering.two_level_clustering does; written here because importing that
module prints to stdout when scipy is absent). k-means is spherical (centroids
renormalised each iteration) like faiss's own IVF training under inner product.

The centroids go into the HNSW graph, whose search breadth must be well above faiss's
default of 16: on CLIP-shaped vectors (a narrow cone, look-alike centroids) efSearch 16
files vectors into the wrong lists when they are added and recall stalls at 0.906 at 1M
however many lists are probed (docs/measurements.md, section 4, "At 1M vectors").
efSearch is stored in the index file; a search for nprobe lists explores
max(efSearch, nprobe) candidates.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import faiss
import numpy as np

log = logging.getLogger("visearch.index")

QUANTIZER_EF = 128  # HNSW efSearch of the coarse quantizer: adding and searching
NITER = 10  # k-means iterations per level (faiss's IVF default)
TOP_POINTS_PER_CENTROID = 2000  # first level: a subsample is plenty for sqrt(nlist) groups


def hnsw_of(ivf: Any) -> Any:
    """The HNSW graph of an IVF index's coarse quantizer, or None (flat, GPU, ...)."""
    quantizer = faiss.downcast_index(ivf.quantizer)
    return quantizer.hnsw if isinstance(quantizer, faiss.IndexHNSW) else None


def two_level_centroids(sample: np.ndarray, nlist: int, seed: int = 1234) -> np.ndarray:
    """``nlist`` unit centroids of ``sample`` (unit rows) by two-level spherical k-means."""
    dim = sample.shape[1]
    groups = max(1, min(nlist, int(round(math.sqrt(nlist)))))
    top = faiss.Kmeans(dim, groups, niter=NITER, spherical=True, seed=seed,
                       max_points_per_centroid=TOP_POINTS_PER_CENTROID)
    top.train(sample)
    _, assign = top.index.search(sample, 1)
    assign = assign.ravel()
    counts = np.bincount(assign, minlength=groups)
    shares = np.cumsum(counts) * nlist // counts.sum()  # each group's share of the lists
    shares[1:] -= shares[:-1].copy()
    parts = []
    for group, share in enumerate(shares):
        if share == 0:
            continue
        members = sample[assign == group]
        if share == 1:
            part = members.mean(axis=0, keepdims=True)
        else:
            sub = faiss.Kmeans(dim, int(share), niter=NITER, spherical=True, seed=seed + group,
                               min_points_per_centroid=1, max_points_per_centroid=256)
            sub.train(np.ascontiguousarray(members))
            part = sub.centroids
        parts.append(part)
    centroids = np.vstack(parts).astype(np.float32)
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return centroids


def train_coarse(ivf: Any, sample: np.ndarray) -> bool:
    """Fill an untrained HNSW coarse quantizer with two-level centroids; False (nothing done)
    for any other quantizer, which the index's own train() then handles."""
    hnsw = hnsw_of(ivf)
    if hnsw is None or ivf.quantizer.ntotal:
        return False
    log.info("two-level k-means: %d lists from %d vectors", ivf.nlist, len(sample))
    ivf.quantizer.add(two_level_centroids(np.ascontiguousarray(sample, np.float32), ivf.nlist))
    hnsw.efSearch = QUANTIZER_EF
    return True
