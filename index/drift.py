"""Drift: how far a set of query embeddings has moved from the corpus the index was built on.

At build time ``measure`` records a reference profile of the corpus in the
manifest; the server (server/drift.py) and ``visearch drift`` bin query
embeddings the same way and compare with the population stability index,
PSI = sum((a - e) * ln(a / e)) over the bins' shares (0.1: small, 0.2: act).

The statistics, each with few bins on purpose: PSI's sampling noise alone is
about (bins - 1) / queries, so a histogram over thousands of IVF lists would
read "drifted" for any window of a thousand queries. Instead:

- ``regions``: occupancy of 16 k-means regions of the corpus (coarse IVF lists;
  the same for Flat indexes, which have no lists);
- ``projections``: 8 fixed random directions (regenerated from a seed), each
  cut at the corpus deciles; the PSI reported is their mean;
- ``top1_score``: the nearest-neighbour score, cut at the corpus deciles of each
  sampled item's nearest other item (a query unlike the corpus finds nothing
  close);
- ``mean_cosine``: cosine of the mean query to the corpus mean (a gauge, not a PSI).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from functools import cached_property

import faiss
import numpy as np

from index.store.vectors import VectorStore, sample_ids

FORMAT = 1
REGIONS = 16
PROJECTIONS = 8
BINS = 10
SAMPLE = 20_000
NN_SAMPLE = 1_000
NN_CANDIDATES = 32  # per probe, re-ranked exactly
SEED = 1234
THRESHOLD = 0.2  # PSI above this: the population has shifted (the usual rule of thumb)
PSI_FLOOR = 1e-4  # an empty bin counts as this share, so PSI stays finite
STATISTICS = ("regions", "projections", "top1_score")


def products(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b.T`` on the calling thread only. numpy's ``@`` hands larger products to
    OpenBLAS's threads, which spin on every core after each call: in a server's
    background thread that cost 18 % of QPS (docs/measurements.md, section 3)."""
    return np.einsum("nd,kd->nk", a, b)


def psi(expected: np.ndarray, counts: np.ndarray) -> float:
    """Population stability index of observed ``counts`` against ``expected`` shares."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), PSI_FLOOR)
    total = float(np.sum(counts))
    a = np.maximum(np.asarray(counts, dtype=np.float64) / max(total, 1.0), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def projection_matrix(dim: int, count: int = PROJECTIONS, seed: int = SEED) -> np.ndarray:
    """(dim, count) unit directions; the seed in the manifest regenerates them."""
    p = np.random.default_rng(seed).standard_normal((dim, count)).astype(np.float32)
    return p / np.linalg.norm(p, axis=0, keepdims=True)


def _encode(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode()


def _decode(text: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").reshape(shape).copy()


def _shares(bins: np.ndarray, count: int) -> np.ndarray:
    return np.bincount(bins, minlength=count).astype(np.float64) / max(len(bins), 1)


@dataclass(frozen=True)
class Reference:
    """The corpus profile of one index version (``Manifest.drift``)."""

    dim: int
    sample: int
    centroids: np.ndarray  # (regions, dim), unit length; 0 rows for tiny corpora
    region_shares: np.ndarray
    seed: int
    projection_edges: np.ndarray  # (PROJECTIONS, BINS - 1)
    projection_shares: np.ndarray  # (PROJECTIONS, BINS)
    mean: np.ndarray  # (dim,)
    top1_edges: np.ndarray  # (BINS - 1,); empty without a nearest-neighbour sample
    top1_shares: np.ndarray
    top1_median: float

    @cached_property
    def projections(self) -> np.ndarray:
        return projection_matrix(self.dim, len(self.projection_edges), self.seed)

    def regions_of(self, vectors: np.ndarray) -> np.ndarray:
        return np.argmax(products(vectors, self.centroids), axis=1) if len(self.centroids) else \
            np.zeros(len(vectors), dtype=np.int64)

    def projection_bins(self, vectors: np.ndarray) -> np.ndarray:
        """(n, PROJECTIONS) bin numbers 0..BINS-1."""
        values = products(vectors, self.projections.T)
        # = searchsorted(edges[j], values[:, j]) for every j at once (left side: ties go low)
        return (values[:, :, None] > self.projection_edges[None]).sum(axis=2)

    def top1_bins(self, scores: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.top1_edges, np.asarray(scores, dtype=np.float32))

    def to_json(self) -> dict[str, object]:
        return {"format": FORMAT, "dim": self.dim, "sample": self.sample,
                "regions": {"count": len(self.centroids), "centroids": _encode(self.centroids),
                            "shares": self.region_shares.round(6).tolist()},
                "projections": {"seed": self.seed,
                                "edges": self.projection_edges.round(6).tolist(),
                                "shares": self.projection_shares.round(6).tolist()},
                "mean": _encode(self.mean),
                "top1_score": {"edges": self.top1_edges.round(6).tolist(),
                               "shares": self.top1_shares.round(6).tolist(),
                               "median": round(self.top1_median, 6)}}

    @classmethod
    def from_json(cls, data: dict) -> Reference | None:
        """None for manifests written before drift profiles (or by a newer format)."""
        if not data or data.get("format") != FORMAT:
            return None
        dim = int(data["dim"])
        regions, proj, top1 = data["regions"], data["projections"], data["top1_score"]
        return cls(dim=dim, sample=int(data["sample"]),
                   centroids=_decode(regions["centroids"], (int(regions["count"]), dim)),
                   region_shares=np.array(regions["shares"]), seed=int(proj["seed"]),
                   projection_edges=np.array(proj["edges"], dtype=np.float32),
                   projection_shares=np.array(proj["shares"]),
                   mean=_decode(data["mean"], (dim,)),
                   top1_edges=np.array(top1["edges"], dtype=np.float32),
                   top1_shares=np.array(top1["shares"]), top1_median=float(top1["median"]))


def profile(vectors: np.ndarray, top1: np.ndarray, regions: int = REGIONS,
            seed: int = SEED) -> Reference:
    """The reference of a corpus sample (unit rows) and its nearest-neighbour scores."""
    n, dim = vectors.shape
    k = min(regions, n // 40)  # faiss wants ~40 points per centroid
    if k >= 2:
        kmeans = faiss.Kmeans(dim, k, niter=20, seed=seed, spherical=True, verbose=False)
        kmeans.train(np.ascontiguousarray(vectors, dtype=np.float32))
        trained = np.asarray(kmeans.centroids, dtype=np.float32)
        centroids = trained / np.linalg.norm(trained, axis=1, keepdims=True)
    else:
        centroids = np.zeros((0, dim), dtype=np.float32)
    quantiles = np.linspace(0, 1, BINS + 1)[1:-1]
    values = vectors @ projection_matrix(dim, PROJECTIONS, seed)
    edges = np.quantile(values, quantiles, axis=0).T.astype(np.float32)
    top1 = np.asarray(top1, dtype=np.float32)
    top1_edges = np.quantile(top1, quantiles).astype(np.float32) if len(top1) else \
        np.zeros(0, dtype=np.float32)
    ref = Reference(dim=dim, sample=n, centroids=centroids.astype(np.float32),
                    region_shares=np.zeros(0), seed=seed, projection_edges=edges,
                    projection_shares=np.zeros(0), mean=vectors.mean(axis=0).astype(np.float32),
                    top1_edges=top1_edges, top1_shares=np.zeros(0),
                    top1_median=float(np.median(top1)) if len(top1) else 0.0)
    bins = ref.projection_bins(vectors)
    return replace(ref, region_shares=_shares(ref.regions_of(vectors), max(len(centroids), 1)),
                   projection_shares=np.stack([_shares(bins[:, j], BINS)
                                               for j in range(bins.shape[1])]),
                   top1_shares=_shares(ref.top1_bins(top1), BINS) if len(top1) else np.zeros(0))


def measure(index: faiss.Index, store: VectorStore, live: np.ndarray,
            nprobe: int | None) -> dict[str, object]:
    """The build's reference (for ``Manifest.drift``): a seeded sample of the live vectors,
    and the score of each of ``NN_SAMPLE`` of them to its nearest other item in ``index``."""
    from index.ann import faiss_index as ann

    vectors = store.get(sample_ids(live, SAMPLE, seed=SEED))
    probe_ids = sample_ids(live, NN_SAMPLE, seed=SEED + 1)
    probes = store.get(probe_ids)
    _, ids = index.search(probes, min(NN_CANDIDATES, len(live)),
                          params=ann.search_parameters(index, nprobe))
    # The nearest item other than the probe itself (an exact copy of it counts), found as a
    # served hit is: PQ candidates re-ranked exactly (PQ distances are only estimates).
    valid = (ids >= 0) & (ids != probe_ids[:, None])
    found = valid.any(axis=1)
    valid, probes = valid[found], probes[found]
    # Padding (-1) and the probe itself are read as the probe (a live id), then masked out.
    others = np.where(valid, ids[found], probe_ids[found][:, None])
    exact = np.einsum("nkd,nd->nk", store.get(others).reshape(*others.shape, store.dim),
                      probes)
    top1 = np.where(valid, exact, -np.inf).max(axis=1).astype(np.float32)
    return profile(vectors, top1).to_json()


@dataclass(frozen=True)
class DriftReport:
    queries: int
    psi: dict[str, float]
    mean_cosine: float
    top1_median: float
    reference_top1_median: float

    def drifted(self, threshold: float = THRESHOLD) -> list[str]:
        return [name for name, value in self.psi.items() if value > threshold]


def compare(ref: Reference, vectors: np.ndarray, top1: np.ndarray | None) -> DriftReport:
    """PSI of each statistic for query embeddings (unit rows) and their top-1 scores."""
    result = {}
    if len(ref.centroids):
        result["regions"] = psi(ref.region_shares,
                                np.bincount(ref.regions_of(vectors), minlength=len(ref.centroids)))
    bins = ref.projection_bins(vectors)
    result["projections"] = float(np.mean([
        psi(ref.projection_shares[j], np.bincount(bins[:, j], minlength=BINS))
        for j in range(bins.shape[1])]))
    if top1 is not None and len(top1) and len(ref.top1_edges):
        result["top1_score"] = psi(ref.top1_shares,
                                   np.bincount(ref.top1_bins(top1), minlength=BINS))
    return DriftReport(len(vectors), result, cosine(vectors.sum(axis=0), ref.mean),
                       float(np.median(top1)) if top1 is not None and len(top1) else float("nan"),
                       ref.top1_median)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denominator if denominator > 0 else 0.0
