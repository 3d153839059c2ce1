"""Contrastive losses on two views per image: NT-Xent (SimCLR) and supervised contrastive
(SupCon, Khosla et al. 2020), which is NT-Xent when every image is its own label."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """Each view's positive is the other view of its image; the other 2N-2 are negatives."""
    n = len(z1)
    return supervised_contrastive(z1, z2, torch.arange(n, device=z1.device), temperature)


def supervised_contrastive(z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor,
                           temperature: float) -> torch.Tensor:
    """Mean over views of -mean log-probability of its positives (same label, itself
    excluded) against all other views of the batch."""
    return supcon(torch.cat([z1, z2]), torch.cat([labels, labels]), temperature)


def supcon(z: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """The supervised contrastive loss over one set of embeddings; rows without any
    positive are left out (the linear probe has one view per image)."""
    z = F.normalize(z.float(), dim=-1)
    both = labels
    logits = z @ z.T / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = (both[:, None] == both[None, :]) & ~self_mask
    count = positive.sum(1)
    has = count > 0
    if not bool(has.any()):
        return z.sum() * 0.0  # no positive pair in this batch: nothing to learn from it
    per_view = -log_prob.masked_fill(~positive, 0.0).sum(1)[has] / count[has]
    return per_view.mean()
