"""The cheap baseline: a linear map trained on frozen embeddings with the same labels and
loss, so the before/after table shows what fine-tuning the tower adds over it."""

from __future__ import annotations

import numpy as np
import torch

from embedder.finetune.losses import supcon

PROBE_STEPS = 300
PROBE_LR = 1e-3
PROBE_BATCH = 1024


def fit_linear_probe(vectors: np.ndarray, label_ids: np.ndarray, temperature: float,
                     seed: int, steps: int = PROBE_STEPS) -> np.ndarray:
    """A (dim, dim) matrix, starting at the identity, trained with supervised contrastive
    loss on ``vectors`` (unit rows); apply as ``normalise(x @ W)``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    y = torch.from_numpy(label_ids.astype(np.int64))
    weight = torch.nn.Parameter(torch.eye(x.shape[1]))
    optimizer = torch.optim.Adam([weight], lr=PROBE_LR)
    for _ in range(steps):
        rows = torch.randperm(len(x), generator=generator)[:PROBE_BATCH]
        loss = supcon(x[rows] @ weight, y[rows], temperature)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return weight.detach().numpy()


def apply_probe(vectors: np.ndarray, weight: np.ndarray) -> np.ndarray:
    out = vectors @ weight
    return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(
        np.float32)
