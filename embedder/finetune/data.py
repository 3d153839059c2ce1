"""Training batches: two augmented views of each catalogued image, with its label id.

Files are decoded on every visit (in DataLoader workers when asked), with the same safe
decoder as the build; JPEGs decode at a reduced scale that still leaves the crops
sharper than the model's input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from embedder.config import DecodeLimits
from embedder.decode import ImageDecodeError, decode_image
from embedder.finetune.augment import Augment, view_rng
from embedder.finetune.config import FinetuneError
from embedder.inputs import Transform


@dataclass
class ViewPairs(Dataset[tuple[torch.Tensor, torch.Tensor, int]]):
    """Item i: (view 0, view 1, label id) of ``paths[i]``, drawn for ``epoch``."""

    paths: Sequence[str]
    label_ids: np.ndarray
    transform: Transform
    augment: Augment
    seed: int
    draft_size: int
    limits: DecodeLimits = DecodeLimits()
    epoch: int = 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        path = self.paths[i]
        try:
            with open(path, "rb") as handle:
                image = decode_image(handle.read(), self.limits, draft_size=self.draft_size)
        except (OSError, ImageDecodeError) as exc:
            raise FinetuneError(f"cannot read {path} for training: {exc}") from exc
        views = [self.transform(self.augment(image, view_rng(self.seed, self.epoch, i, v)))
                 for v in (0, 1)]
        return views[0], views[1], int(self.label_ids[i])


def label_ids(paths: Sequence[str], labels: dict[str, str]) -> np.ndarray:
    """Integer ids: one per label; every unlabelled image is a class of its own."""
    names = {name: k for k, name in enumerate(sorted(set(labels.values())))}
    out = np.empty(len(paths), dtype=np.int64)
    next_id = len(names)
    for i, path in enumerate(paths):
        if path in labels:
            out[i] = names[labels[path]]
        else:
            out[i] = next_id
            next_id += 1
    return out


def epoch_loader(data: ViewPairs, epoch: int, batch_size: int, seed: int, workers: int
                 ) -> DataLoader[tuple[torch.Tensor, torch.Tensor, int]]:
    """This epoch's batches in a seeded order; the last partial batch is dropped when a
    full one exists (a contrastive batch of two images teaches little)."""
    data.epoch = epoch
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return DataLoader(data, batch_size=batch_size, shuffle=True, generator=generator,
                      drop_last=len(data) > batch_size, num_workers=workers,
                      persistent_workers=False)
