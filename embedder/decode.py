"""Decode untrusted image bytes into RGB safely: size limits first, every failure reported."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from common.errors import VisearchError
from embedder.config import DecodeLimits

HIGH_BIT_DEPTH_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
DEFAULT_LIMITS = DecodeLimits()
ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
# Modes Image.reduce supports directly (palette images are converted first, by to_rgb).
REDUCIBLE_MODES = {"RGB", "RGBA", "L", "LA", "I", "F", "CMYK"}


class ImageDecodeError(VisearchError, ValueError):
    """A file is not a usable image; the message is the reason shown to the user."""


def decode_image(
    data: bytes,
    limits: DecodeLimits = DEFAULT_LIMITS,
    *,
    draft_size: int | None = None,
    crop: Sequence[int] | None = None,
) -> Image.Image:
    """Decode ``data`` into an RGB image.

    Args:
        data: the encoded file.
        limits: pixel limits, checked from the header before any pixel is decoded.
        draft_size: let JPEG decode at a reduced scale that keeps both sides >= this.
        crop: ``(left, top, right, bottom)`` in pixels of the EXIF-oriented image.

    Raises:
        ImageDecodeError: for any broken, unsupported, too large or too small input.
    """
    if not data:
        raise ImageDecodeError("empty file")
    try:
        image: Image.Image = Image.open(io.BytesIO(data))
        width, height = image.size
        if width * height > limits.max_pixels:
            raise ImageDecodeError(
                f"{width}x{height} = {width * height:,} pixels exceeds the limit of "
                f"{limits.max_pixels:,} (--max-pixels)"
            )
        if min(width, height) < limits.min_side:
            raise ImageDecodeError(f"{width}x{height} is smaller than --min-side {limits.min_side}")
        if draft_size and crop is None:
            image.draft("RGB", (draft_size, draft_size))
        image.load()  # animated images: this is the first frame
        ImageOps.exif_transpose(image, in_place=True)  # no full-size copy when upright
        if crop is not None:
            image = image.crop(_check_crop(crop, image.size))
        elif draft_size:
            image = _reduce_for(image, draft_size)
        return to_rgb(image)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not an image, or a format Pillow cannot read") from exc
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"decompression bomb: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - see below
        # Broken files raise far more than OSError: SyntaxError, ValueError, EOFError,
        # struct.error, IndexError, ZeroDivisionError, MemoryError... each is this
        # file's failure and must never stop a build or a server.
        raise ImageDecodeError(f"{type(exc).__name__}: {exc}") from exc


def _reduce_for(image: Image.Image, size: int) -> Image.Image:
    """Formats without draft mode (PNG, WebP...) decode at full size; shrink by an integer
    factor at once, keeping the short side >= 2 * ``size``, so the conversions after it and
    the model's resize work on a small copy."""
    factor = min(image.size) // (2 * size)
    if factor < 2 or image.mode not in REDUCIBLE_MODES:
        return image
    return image.reduce(factor)


def image_pixels(data: bytes) -> int:
    """Width x height from the header alone (nothing decoded); 0 when unreadable, so the
    decoder reports the real reason."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception:  # noqa: BLE001 - decode_image says what is wrong with it
        return 0
    return width * height


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited onto white. An RGB image is
    returned as it is (no copy)."""
    if image.mode in HIGH_BIT_DEPTH_MODES:
        image = _to_8bit_grey(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _to_8bit_grey(image: Image.Image) -> Image.Image:
    # Pillow's own conversion clips 16-bit values at 255 instead of scaling them.
    values = np.asarray(image, dtype=np.float32)
    if image.mode == "F":
        scale = 255.0 if values.size and float(values.max()) <= 1.0 else 1.0
    else:
        scale = 1 / 257 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 1.0
    grey = np.clip(values * scale, 0, 255).round().astype(np.uint8)
    return Image.fromarray(grey, "L")


def _check_crop(crop: Sequence[int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    if len(crop) != 4:
        raise ImageDecodeError(
            f"crop box needs 4 numbers (left, top, right, bottom), got {len(crop)}")
    left, top, right, bottom = (int(v) for v in crop)
    width, height = size
    if not (0 <= left < right <= width and 0 <= top < bottom <= height):
        raise ImageDecodeError(
            f"crop box {left},{top},{right},{bottom} is empty or outside the {width}x{height} image"
        )
    return left, top, right, bottom
