"""Views for retrieval: the changes a photo goes through on its way to a search (crop,
mirror, light and colour, blur, a slight tilt, JPEG re-compression), not the heavy
distortions (solarise, grayscale, cutout) that teach a classifier invariances a
search should not have.

Every view's randomness comes from ``view_rng(seed, epoch, index, view)``, so the same
seed gives the same views whatever the worker count or the order of loading.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps


def view_rng(seed: int, epoch: int, index: int, view: int) -> np.random.Generator:
    """The random stream of one view of one image in one epoch."""
    return np.random.default_rng([seed, epoch, index, view])


@dataclass(frozen=True)
class Augment:
    """Parameters of the views; each step is applied with its own probability.

    Attributes:
        min_scale: smallest crop area as a share of the image (aspect 3/4..4/3).
        flip: probability of a horizontal mirror.
        jitter: brightness, contrast and saturation each scaled by 1 +- this.
        blur: probability of a Gaussian blur of radius 0.5..2 px (at 256 px).
        rotate: probability of a rotation by up to ``max_degrees``.
        jpeg: probability of re-compression at quality 30..90.
    """

    min_scale: float = 0.35
    flip: float = 0.5
    jitter: float = 0.4
    blur: float = 0.3
    rotate: float = 0.3
    max_degrees: float = 15.0
    jpeg: float = 0.3

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> Image.Image:
        """A view of an RGB image; draws the same number of values whatever is applied,
        so one step's outcome never shifts the next step's randomness."""
        u = rng.random(16).tolist()
        image = self._crop(image, u[0], u[1], u[2], u[3])
        if u[4] < self.flip:
            image = ImageOps.mirror(image)
        for enhancer, value in ((ImageEnhance.Brightness, u[5]), (ImageEnhance.Contrast, u[6]),
                                (ImageEnhance.Color, u[7])):
            image = enhancer(image).enhance(1.0 + self.jitter * (2.0 * value - 1.0))
        if u[8] < self.rotate:
            degrees = self.max_degrees * (2.0 * u[9] - 1.0)
            image = image.rotate(degrees, resample=Image.Resampling.BILINEAR,
                                 fillcolor=(128, 128, 128))
        if u[10] < self.blur:
            radius = (0.5 + 1.5 * u[11]) * max(image.size) / 256
            image = image.filter(ImageFilter.GaussianBlur(radius))
        if u[12] < self.jpeg:
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=int(30 + 60 * u[13]))
            image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
        return image

    def _crop(self, image: Image.Image, a: float, b: float, c: float, d: float) -> Image.Image:
        """Random resized crop's box (the resize is the model's own preprocessing)."""
        w, h = image.size
        area = w * h * (self.min_scale + (1.0 - self.min_scale) * a)
        aspect = float(np.exp(np.log(3 / 4) + (np.log(4 / 3) - np.log(3 / 4)) * b))
        cw = int(round(min(w, np.sqrt(area * aspect))))
        ch = int(round(min(h, np.sqrt(area / aspect))))
        x0 = int((w - cw) * c)
        y0 = int((h - ch) * d)
        return image.crop((x0, y0, x0 + max(cw, 1), y0 + max(ch, 1)))
