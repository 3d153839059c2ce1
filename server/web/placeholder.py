"""The image shown where a thumbnail cannot be made: the page keeps its grid intact."""

from __future__ import annotations

import functools
import io

from PIL import Image, ImageDraw


@functools.lru_cache(maxsize=8)
def placeholder_jpeg(size: int) -> bytes:
    """A grey square with a cross, ``size`` pixels a side (clamped to 16..1024)."""
    size = max(16, min(1024, size))
    image = Image.new("RGB", (size, size), (220, 220, 220))
    draw = ImageDraw.Draw(image)
    margin, width = size // 4, max(1, size // 32)
    draw.line((margin, margin, size - margin, size - margin), fill=(170, 60, 60), width=width)
    draw.line((margin, size - margin, size - margin, margin), fill=(170, 60, 60), width=width)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()
