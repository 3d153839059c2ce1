"""The before/after table: IDX (the base model), a linear probe on IDX's frozen vectors,
and NEW_IDX (the fine-tuned tower), all on the same held-out images and the same
augmented copies. The base model's side is measured before training changes it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from embedder.config import DecodeLimits
from embedder.decode import decode_image
from embedder.finetune.augment import Augment, view_rng
from embedder.finetune.config import FinetuneSettings
from embedder.finetune.data import label_ids
from embedder.finetune.measure import (
    CAPTION,
    label_retrieval,
    near_duplicate_recall,
    stored_vectors,
    text_alignment,
)
from embedder.finetune.probe import apply_probe, fit_linear_probe
from index.store.directory import IndexDirectory

if TYPE_CHECKING:
    from embedder.embedder import Embedder

EVAL_EPOCH = 1_000_000  # the copies' random stream: never one a training epoch draws
DUP_COPIES = 200
EMBED_BATCH = 64
BEFORE, PROBE, AFTER = "IDX (base)", "linear probe on IDX", "NEW_IDX (fine-tuned)"


@dataclass
class Evaluation:
    """Held-out images and copies, with every number measured so far per row."""

    source: IndexDirectory
    held_paths: list[str]
    held_labels: list[str]
    base_vectors: np.ndarray
    labels: dict[str, str]
    dup_sources: list[str]
    copies: list[Image.Image]
    copies_before: np.ndarray
    ks: tuple[int, ...]
    limits: DecodeLimits
    augment: Augment = field(default_factory=Augment)
    captions: list[str] = field(default_factory=list)
    text_vectors: np.ndarray | None = None
    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    dup_from_training: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"heldout_images": len(self.held_paths),
                "heldout_labels": len(set(self.held_labels)),
                "near_duplicate_copies": len(self.copies),
                "copies_of_training_images": self.dup_from_training,
                "rows": self.rows}

    def text_alignment_after(self, tuned: Embedder) -> dict[str, float] | None:
        """Text-to-image mAP@10 of label captions before and after; None without labels."""
        if self.text_vectors is None:
            return None
        after = _embed(tuned, [_load(p, self.limits) for p in self.held_paths])
        k = max(self.ks)
        before_map = self.rows[BEFORE][f"text_map@{k}"]
        after_map = text_alignment(self.text_vectors, self.captions, after, self.held_labels, k)
        self.rows.setdefault(AFTER, {})[f"text_map@{k}"] = after_map
        return {"before": before_map, "after": after_map, "captions": len(self.captions)}


def measure_before(embedder: Embedder, source: IndexDirectory, paths: Sequence[str],
                   labels: dict[str, str], held: dict[str, str], seed: int,
                   ks: Sequence[int], limits: DecodeLimits) -> Evaluation:
    """IDX's numbers, and the copies and captions to measure NEW_IDX with later."""
    held_paths, base_vectors = stored_vectors(source, sorted(held))
    held_labels = [held[p] for p in held_paths]
    augment = Augment()
    pool = held_paths or list(paths)  # without labels: training images, unseen views
    pick = np.random.default_rng(seed).choice(len(pool), size=min(DUP_COPIES, len(pool)),
                                              replace=False)
    sources = [pool[i] for i in sorted(pick)]
    copies = [augment(_load(p, limits), view_rng(seed, EVAL_EPOCH, i, 0))
              for i, p in enumerate(sources)]
    ev = Evaluation(source, held_paths, held_labels, base_vectors, labels, sources, copies,
                    _embed(embedder, copies), tuple(ks), limits, augment,
                    dup_from_training=not held_paths)
    row = ev.rows.setdefault(BEFORE, {})
    if held_paths:
        row.update(_label_retrieval(ev, source, base_vectors))
        ev.captions = sorted(set(held_labels))
        ev.text_vectors = embedder.encode_texts([CAPTION.format(c) for c in ev.captions])
        row[f"text_map@{max(ks)}"] = text_alignment(ev.text_vectors, ev.captions, base_vectors,
                                                    held_labels, max(ks))
    row.update(_dup_recall(ev, source, ev.copies_before))
    return ev


def measure_after(ev: Evaluation, tuned: Embedder, target: IndexDirectory,
                  train_labels: dict[str, str], settings: FinetuneSettings) -> Evaluation:
    """NEW_IDX's numbers on the same images, and the linear probe's beside them."""
    row = ev.rows.setdefault(AFTER, {})
    if ev.held_paths:
        found, tuned_vectors = stored_vectors(target, ev.held_paths)
        row.update(_label_retrieval(ev, target, tuned_vectors, found))
    row.update(_dup_recall(ev, target, _embed(tuned, ev.copies)))
    if train_labels and ev.held_paths:
        train_paths, train_vectors = stored_vectors(ev.source, sorted(train_labels))
        weight = fit_linear_probe(train_vectors, label_ids(train_paths, train_labels),
                                  settings.temperature, settings.seed)
        probe = ev.rows.setdefault(PROBE, {})
        probe.update(_label_retrieval(ev, ev.source, apply_probe(ev.base_vectors, weight),
                                      weight=weight))
        probe.update(_dup_recall(ev, ev.source, apply_probe(ev.copies_before, weight), weight))
    order = [BEFORE, PROBE, AFTER]
    ev.rows = {name: ev.rows[name] for name in order if name in ev.rows}
    return ev


def _label_retrieval(ev: Evaluation, directory: IndexDirectory, queries: np.ndarray,
                     query_paths: Sequence[str] | None = None,
                     weight: np.ndarray | None = None) -> dict[str, float]:
    """Held-out queries against all of ``directory``'s vectors (through the probe's map
    when ``weight`` is given)."""
    paths, gallery = stored_vectors(directory)
    if weight is not None:
        gallery = apply_probe(gallery, weight)
    return label_retrieval(queries, query_paths or ev.held_paths, gallery, paths, ev.labels,
                           ev.ks)


def _dup_recall(ev: Evaluation, directory: IndexDirectory, copies: np.ndarray,
                weight: np.ndarray | None = None) -> dict[str, float]:
    """Recall of each copy's original among all of ``directory``'s vectors."""
    paths, gallery = stored_vectors(directory)
    if weight is not None:
        gallery = apply_probe(gallery, weight)
    row_of = {p: i for i, p in enumerate(paths)}
    pairs = [(i, row_of[p]) for i, p in enumerate(ev.dup_sources) if p in row_of]
    if not pairs:
        return {}
    chosen, targets = (np.array(x) for x in zip(*pairs, strict=True))
    return near_duplicate_recall(copies[chosen], gallery, targets, ev.ks)


def _load(path: str, limits: DecodeLimits) -> Image.Image:
    with open(path, "rb") as handle:
        return decode_image(handle.read(), limits)


def _embed(embedder: Embedder, images: Sequence[Image.Image]) -> np.ndarray:
    if not images:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.concatenate([embedder.encode_pil(images[i:i + EMBED_BATCH])
                           for i in range(0, len(images), EMBED_BATCH)])
