"""Bytes (and an optional crop box) to the model's input tensor: the one path that the
build's decode workers, the server's request threads and evaluation all take."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from embedder.config import DecodeLimits
from embedder.decode import decode_image

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
    """

    transform: Transform
    limits: DecodeLimits
    draft_size: int | None = None

    def __call__(self, data: bytes, crop: Sequence[int] | None = None) -> torch.Tensor:
        """Raises ImageDecodeError for anything that is not a usable image."""
        draft = None if crop is not None else self.draft_size
        return self.transform(decode_image(data, self.limits, draft_size=draft, crop=crop))
