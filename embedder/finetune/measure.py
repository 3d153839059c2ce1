"""Before/after numbers on the same held-out images: label retrieval (the metrics of
`visearch eval --labels`), near-duplicate recall of augmented copies, and how well
captions made of the labels still find their images (text alignment).

Search here is exact inner product over the stored vectors, so the numbers measure the
embeddings, not the ANN index's approximation. Only held-out images (never trained on)
are queries; they search the whole index, as a new photo of a known subject would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evaluation.metrics import task_metrics
from index.store.directory import IndexDirectory

CHUNK = 1024
CAPTION = "a photo of a {}"


def stored_vectors(directory: IndexDirectory, paths: Sequence[str] | None = None
                   ) -> tuple[list[str], np.ndarray]:
    """(paths, unit vectors) of the live images of an index, or of those of ``paths`` that
    it holds, in the order given."""
    catalog = directory.catalog(readonly=True)
    try:
        rows = dict((path, vid) for vid, path in catalog.live_rows())
        wanted = [p for p in (paths if paths is not None else sorted(rows)) if p in rows]
        store = directory.vector_store(catalog, directory.manifest().dim)
        vectors = store.get(np.array([rows[p] for p in wanted], dtype=np.int64))
    finally:
        catalog.close()
    return wanted, np.asarray(vectors, dtype=np.float32)


def top_k(queries: np.ndarray, gallery: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the k most similar gallery rows per query (exact, chunked)."""
    k = min(k, len(gallery))
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), CHUNK):
        sims = queries[start:start + CHUNK] @ gallery.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k else sims[:, :0]
        order = np.take_along_axis(sims, part, 1).argsort(axis=1)[:, ::-1]
        out[start:start + CHUNK] = np.take_along_axis(part, order, 1)
    return out


def label_retrieval(queries: np.ndarray, query_paths: Sequence[str], gallery: np.ndarray,
                    gallery_paths: Sequence[str], labels: dict[str, str], ks: Sequence[int]
                    ) -> dict[str, float]:
    """Each held-out image queries the whole index; relevant = the other images of its
    label (the query itself excluded). mAP/recall/MRR/nDCG/precision at each k, as
    `visearch eval --labels` reports them."""
    row_of = {p: i for i, p in enumerate(gallery_paths)}
    members: dict[str, set[int]] = {}
    for i, path in enumerate(gallery_paths):
        if path in labels:
            members.setdefault(labels[path], set()).add(i)
    ranked = top_k(queries, gallery, max(ks) + 1)
    rankings, relevant = [], []
    for path, row in zip(query_paths, ranked, strict=True):
        own = row_of.get(path, -1)
        rankings.append([int(i) for i in row if i != own][:max(ks)])
        relevant.append(members.get(labels[path], set()) - {own})
    metrics = task_metrics(rankings, relevant, ks)
    return {f"{name}@{k}": value for k, row in metrics.items() for name, value in row.items()}


def near_duplicate_recall(copies: np.ndarray, gallery: np.ndarray, targets: np.ndarray,
                          ks: Sequence[int]) -> dict[str, float]:
    """Share of augmented copies whose original (row ``targets[i]``) is in the top k."""
    ranked = top_k(copies, gallery, max(ks))
    return {f"dup_recall@{k}": float(np.mean([t in row[:k] for t, row in
                                              zip(targets, ranked, strict=True)]))
            for k in ks}


def text_alignment(text_vectors: np.ndarray, captions_of: Sequence[str], vectors: np.ndarray,
                   labels: Sequence[str], k: int = 10) -> float:
    """mAP@k of each caption ("a photo of a LABEL") ranking the held-out images."""
    ranked = top_k(text_vectors, vectors, k)
    relevant = [{j for j, other in enumerate(labels) if other == label} for label in captions_of]
    return task_metrics([list(r) for r in ranked], relevant, [k])[k]["map"]
