"""The fine-tuning settings: one frozen value, recorded in the new index's manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from common.errors import VisearchError

SELF_SUPERVISED = "self-supervised"
SUPERVISED = "supervised"
ALL_LAYERS = -1


class FinetuneError(VisearchError):
    """Fine-tuning cannot start or continue; the message says what to change."""


@dataclass(frozen=True)
class FinetuneSettings:
    """How the image tower is trained.

    Attributes:
        objective: ``self-supervised`` (NT-Xent on two views of each image) or
            ``supervised`` (supervised contrastive: same label = positive).
        epochs: passes over the training images.
        batch_size: images per step (each gives two views, so 2x in the loss).
        lr: peak learning rate, reached after ``warmup`` of the steps, then cosine decay to 0.
        warmup: fraction of all steps spent warming up linearly.
        weight_decay: AdamW decoupled weight decay.
        temperature: of the contrastive softmax.
        train_layers: the last N transformer blocks (with the final norm and the projection)
            are trained, the rest frozen; -1 trains the whole image tower.
        holdout: fraction of each label's images held out for evaluation (never trained on).
        seed: the one seed of the split, the shuffling, the augmentations and the init.
    """

    objective: str = SELF_SUPERVISED
    epochs: int = 5
    batch_size: int = 64
    lr: float = 3e-4
    warmup: float = 0.1
    weight_decay: float = 0.05
    temperature: float = 0.1
    train_layers: int = 2
    holdout: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.objective not in (SELF_SUPERVISED, SUPERVISED):
            raise FinetuneError(f"unknown objective {self.objective!r}: use {SELF_SUPERVISED} "
                                f"or {SUPERVISED}")
        if not 0.0 <= self.holdout < 1.0:
            raise FinetuneError(f"--holdout must be in [0, 1), not {self.holdout}")
        if not 0.0 <= self.warmup < 1.0:
            raise FinetuneError(f"--warmup must be in [0, 1), not {self.warmup}")
        if self.temperature <= 0 or self.lr <= 0:
            raise FinetuneError("--temperature and --lr must be positive")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def same_run(self, other: dict[str, Any]) -> bool:
        """Whether a saved run used these settings (epochs may grow on resume)."""
        mine = {k: v for k, v in asdict(self).items() if k != "epochs"}
        return mine == {k: v for k, v in other.items() if k != "epochs"}
