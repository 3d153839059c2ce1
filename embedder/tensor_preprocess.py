"""open_clip's eval preprocessing (resize, centre crop, normalise) as batched tensor ops.

The PIL transform runs per image on one CPU core; this runs on whatever device the
decoded pixels are on (the GPU after nvJPEG), so it is the same code here and there and
is tested on the CPU against open_clip's own transform. Images of equal size are resized
in one call; the crop and the normalisation are one call per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

# EXIF orientation (tag 0x0112) -> the PIL transpose ImageOps.exif_transpose applies, as
# tensor ops on (..., H, W): flips and transposes only, so no pixel changes value.
_H, _W = -2, -1


@dataclass(frozen=True)
class TensorPreprocess:
    """What the model's preprocessing does, for images already decoded to uint8 tensors.

    Attributes:
        size: output (height, width).
        mean, std: per-channel normalisation of values in [0, 1].
        interpolation: ``bicubic`` or ``bilinear`` (antialiased, as PIL resizes).
        resize_mode: ``shortest`` (resize the short side, centre crop) or ``squash``.
    """

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    @classmethod
    def from_cfg(cls, cfg: dict[str, Any]) -> TensorPreprocess | None:
        """The tensor form of an open_clip preprocess config, or None when it has none here
        (``longest`` with padding, a non-square crop, a non-RGB mode): such models keep the
        CPU decode path."""
        size = cfg.get("size", 224)
        height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        mode = cfg.get("resize_mode") or "shortest"
        interpolation = cfg.get("interpolation") or "bicubic"
        if interpolation == "random":  # open_clip: random means bicubic at inference
            interpolation = "bicubic"
        if (mode not in ("shortest", "squash") or interpolation not in ("bicubic", "bilinear")
                or cfg.get("mode", "RGB") != "RGB"
                or (mode == "shortest" and height != width)):
            return None
        return cls((height, width), _triple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),
                   _triple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),
                   interpolation, mode)

    def resized_shape(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) after the resize, exactly as torchvision's Resize(int) computes it."""
        if self.resize_mode == "squash":
            return self.size
        side = self.size[0]
        short, long = (width, height) if width <= height else (height, width)
        if short == side:
            return height, width
        new_long = int(side * long / short)
        return (side, new_long) if height <= width else (new_long, side)

    def __call__(self, images: Sequence[torch.Tensor], dtype: torch.dtype = torch.float32
                 ) -> torch.Tensor:
        """uint8 (3, H, W) images of any sizes, on one device -> (N, 3, h, w) model input."""
        if not images:
            return torch.zeros((0, 3, *self.size), dtype=dtype)
        device = images[0].device
        out = torch.empty((len(images), 3, *self.size), dtype=torch.float32, device=device)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault((int(image.shape[_H]), int(image.shape[_W])), []).append(i)
        for (height, width), members in groups.items():
            batch = torch.stack([images[i] for i in members]) if len(members) > 1 \
                else images[members[0]].unsqueeze(0)
            out[members] = self._resize_crop(batch, height, width)
        return self.normalise(out).to(dtype)

    def _resize_crop(self, batch: torch.Tensor, height: int, width: int) -> torch.Tensor:
        new_h, new_w = self.resized_shape(height, width)
        pixels = batch.float()
        if (new_h, new_w) != (height, width):
            pixels = F.interpolate(pixels, size=(new_h, new_w), mode=self.interpolation,
                                   align_corners=False, antialias=True)
            # PIL resizes to uint8: clamp the bicubic overshoot and round the same way.
            pixels = pixels.clamp_(0, 255).round_()
        crop_h, crop_w = self.size
        top = int(round((new_h - crop_h) / 2.0))
        left = int(round((new_w - crop_w) / 2.0))
        return pixels[..., top:top + crop_h, left:left + crop_w]

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """Values in [0, 255] -> (x / 255 - mean) / std, in place, one op per batch."""
        mean = torch.tensor(self.mean, device=pixels.device).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(self.std, device=pixels.device).view(1, 3, 1, 1) * 255.0
        return pixels.sub_(mean).div_(std)


def orient(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply EXIF orientation to a (C, H, W) tensor as ImageOps.exif_transpose does."""
    if orientation == 2:
        return image.flip(_W)
    if orientation == 3:
        return image.flip(_H, _W)
    if orientation == 4:
        return image.flip(_H)
    if orientation == 5:
        return image.transpose(_H, _W)
    if orientation == 6:
        return image.transpose(_H, _W).flip(_W)
    if orientation == 7:
        return image.transpose(_H, _W).flip(_H, _W)
    if orientation == 8:
        return image.transpose(_H, _W).flip(_H)
    return image


def _triple(values: Any) -> tuple[float, float, float]:
    if isinstance(values, (int, float)):
        return (float(values),) * 3  # type: ignore[return-value]
    a, b, c = (float(v) for v in values)
    return a, b, c
