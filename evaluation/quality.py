"""Task quality from labels: does a query find the other images of its class?"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from common.errors import VisearchError
from evaluation.backends import SearchBackend
from evaluation.metrics import evaluable, task_metrics
from index.ann.query import SearchParams
from index.store.catalog import Catalog
from index.store.vectors import VectorStore, sample_ids


class LabelsError(VisearchError, ValueError):
    """The labels cannot be read or match no indexed image."""


def read_labels(path: Path) -> dict[str, str]:
    """``path,label`` rows (a header row ``path,label`` is skipped); relative paths are
    relative to the CSV's folder."""
    base = path.parent
    labels: dict[str, str] = {}
    try:
        with open(path, newline="") as handle:
            for row_no, row in enumerate(csv.reader(handle), 1):
                if not row or row[0].startswith("#"):
                    continue
                if len(row) < 2:
                    raise LabelsError(f"{path}:{row_no}: expected path,label")
                if row_no == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]:
                    continue
                labels[os.path.abspath(base / row[0].strip())] = row[1].strip()
    except OSError as exc:
        raise LabelsError(f"cannot read labels {path}: {exc.strerror or exc}") from exc
    return labels


def labels_from_folders(paths: dict[int, str]) -> dict[str, str]:
    """Folder-per-class corpora: each image's label is the name of its folder."""
    return {p: os.path.basename(os.path.dirname(p)) for p in paths.values()}


def evaluate_labels(backend: SearchBackend, catalog: Catalog, store: VectorStore,
                    labels: dict[str, str], ks: list[int], nprobe: int | None,
                    num_queries: int, seed: int) -> dict[str, object]:
    """Each sampled labelled image queries the index; relevant = same label, itself excluded."""
    ids_by_path = catalog.ids_for_paths(labels)
    if not ids_by_path:
        raise LabelsError("none of the labelled paths is in the index (paths must match the "
                          "ones the build indexed)")
    label_of = {vid: labels[path] for path, vid in ids_by_path.items()}
    members: dict[str, set[int]] = defaultdict(set)
    for vid, label in label_of.items():
        members[label].add(vid)
    labelled = np.array(sorted(label_of), dtype=np.int64)
    query_ids = sample_ids(labelled, num_queries, seed)
    depth = max(ks) + 1  # one more: the query finds itself
    hits = backend.search(store.get(query_ids), SearchParams(k=depth, nprobe=nprobe))
    rankings, relevants = [], []
    for qid, row in zip(query_ids, hits.ids, strict=True):
        ranking = [int(i) for i in row if i >= 0 and i != qid][:max(ks)]
        rankings.append(ranking)
        relevants.append(members[label_of[int(qid)]] - {int(qid)})
    return {
        "labelled_in_index": len(label_of),
        "labels": len(members),
        "queries": len(query_ids),
        "queries_with_relevant": evaluable(relevants),
        "metrics": {str(k): v for k, v in task_metrics(rankings, relevants, ks).items()},
    }
