"""The model's preprocessing split in two: decode workers make uint8 pixels at the model's
input size, and the process that runs the model normalises whole batches in one op.

open_clip's eval transform (resize the shortest side, center crop, ``ToTensor``,
``Normalize``) run per image in a worker costs more than decoding a draft-mode JPEG,
and its float output is four times the bytes to hand back to the main process. The
geometry here is torchvision's own (same sizes, same Pillow resample filter, same
crop box), and the normalisation the same float32 ops, so the result is identical to
the transform's on the same decoded image; ``tests/embedder/test_pixels.py`` holds it to
that. Configurations this does not cover (``longest`` or ``squash`` resizing, non-square
inputs, another interpolation) return no plan, and callers keep the transform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class PixelPlan:
    """Resize the shortest side to ``size`` and center-crop a ``size`` square (uint8),
    then normalise with ``mean`` and ``std`` (float32). Picklable for workers."""

    size: int
    resample: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def for_model(cls, cfg: dict[str, Any]) -> PixelPlan | None:
        """The plan for an open_clip preprocess config, or None when it is not covered."""
        size = cfg.get("size")
        if isinstance(size, (tuple, list)):
            if len(size) != 2 or size[0] != size[1]:
                return None
            size = size[0]
        resample = RESAMPLE.get(str(cfg.get("interpolation", "bicubic")))
        if (not isinstance(size, int) or resample is None or cfg.get("mode", "RGB") != "RGB"
                or cfg.get("resize_mode", "shortest") != "shortest"):
            return None
        mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
        if len(mean) != 3 or len(std) != 3:
            return None
        return cls(size, int(resample), mean, std)  # type: ignore[arg-type]

    def fit(self, image: Image.Image) -> np.ndarray:
        """An RGB image to (3, size, size) uint8: torchvision's ``Resize(size)`` (shortest
        side) and ``CenterCrop(size)`` on a PIL image, without the float conversion."""
        width, height = image.size
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(self.size * long / short)
        new_w, new_h = (self.size, new_long) if width <= height else (new_long, self.size)
        if (new_w, new_h) != (width, height):
            image = image.resize((new_w, new_h), self.resample)
        left = int(round((new_w - self.size) / 2.0))
        top = int(round((new_h - self.size) / 2.0))
        if (new_w, new_h) != (self.size, self.size):
            image = image.crop((left, top, left + self.size, top + self.size))
        return np.asarray(image).transpose(2, 0, 1)

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) on any device to the model's float32 input: ``ToTensor``'s
        division by 255 then ``Normalize``, the same ops in the same order."""
        mean = torch.tensor(self.mean, dtype=torch.float32, device=pixels.device)
        std = torch.tensor(self.std, dtype=torch.float32, device=pixels.device)
        return pixels.float().div_(255).sub_(mean[:, None, None]).div_(std[:, None, None])
