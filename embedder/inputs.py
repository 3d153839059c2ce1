"""Bytes (and an optional crop box) to the model's input tensor: the one path that the
build's decode workers, the server's request threads and evaluation all take."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from embedder.config import DecodeLimits
from embedder.decode import decode_image
from embedder.pixels import PixelPlan

Transform = Callable[[Image.Image], torch.Tensor]


@dataclass(frozen=True)
class ModelInput:
    """Decode safely (limits, EXIF, any mode to RGB) and preprocess for one model.

    Picklable, so DataLoader workers run the same code as the server.

    Attributes:
        transform: the model's preprocessing (resize, crop, normalise).
        limits: what the decoder accepts.
        draft_size: JPEGs may decode at a reduced scale keeping both sides >= this
            (the model's input size); not used with a crop box, whose pixels are exact.
        plan: the same preprocessing split into uint8 pixels and a batch normalisation
            (embedder.pixels); None where the model's config is not covered, and then
            ``transform`` does all of it.
    """

    transform: Transform
    limits: DecodeLimits
    draft_size: int | None = None
    plan: PixelPlan | None = None

    def __call__(self, data: bytes, crop: Sequence[int] | None = None) -> torch.Tensor:
        """Raises ImageDecodeError for anything that is not a usable image."""
        if self.plan is None:
            return self.transform(self.decode(data, crop))
        pixels = torch.from_numpy(np.ascontiguousarray(self.plan.fit(self.decode(data, crop))))
        return self.plan.normalise(pixels[None])[0]

    def pixels(self, data: bytes) -> np.ndarray:
        """(3, H, W) uint8 at the model's input size, normalised later by ``plan`` a batch
        at a time. Only with a plan. Raises ImageDecodeError."""
        assert self.plan is not None, "pixels() needs a PixelPlan"
        return self.plan.fit(self.decode(data))

    def decode(self, data: bytes, crop: Sequence[int] | None = None) -> Image.Image:
        draft = None if crop is not None else self.draft_size
        return decode_image(data, self.limits, draft_size=draft, crop=crop)
