"""The held-out split: per label, a seeded share of its images is never trained on, and
only those images are evaluation queries (and their gallery), so a score never rewards
memorising a training image."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np


def stratified_holdout(labels: dict[str, str], fraction: float, seed: int
                       ) -> tuple[dict[str, str], dict[str, str]]:
    """(train, held-out) label maps. Each label keeps at least one training image and
    holds out ``round(n * fraction)`` of its ``n`` images, or none when that is fewer
    than two (a held-out query needs another held-out image of its label to find)."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for path, label in labels.items():
        by_label[label].append(path)
    rng = np.random.default_rng(seed)
    train: dict[str, str] = {}
    held: dict[str, str] = {}
    for label in sorted(by_label):
        paths = sorted(by_label[label])
        order = rng.permutation(len(paths))
        count = min(int(round(len(paths) * fraction)), len(paths) - 1)
        if count < 2:
            count = 0
        for rank, i in enumerate(order):
            (held if rank < count else train)[paths[i]] = label
    return train, held


def split_paths(paths: Sequence[str], labels: dict[str, str], fraction: float, seed: int
                ) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """(paths to train on, their labels, held-out labels): every image that is not held
    out trains, labelled or not; no held-out image is among the training paths."""
    train_labels, held = stratified_holdout(labels, fraction, seed)
    return [p for p in paths if p not in held], train_labels, held
