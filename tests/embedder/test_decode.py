"""Decoding of real files: every Pillow mode becomes RGB, every broken file a clear error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from embedder.config import DecodeLimits
from embedder.decode import ImageDecodeError, decode_image
from tests.imagegen import picture, write_bad_and_odd


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_bad_and_odd(tmp_path_factory.mktemp("odd"))


@pytest.mark.parametrize("kind", ["truncated", "random", "empty", "text", "bomb"])
def test_broken_files_raise_decode_error_with_reason(files, kind):
    bad, _ = files
    with pytest.raises(ImageDecodeError) as info:
        decode_image(bad[kind].read_bytes())
    assert str(info.value)


def test_bomb_is_rejected_by_our_limit_before_decoding(files):
    bad, _ = files
    with pytest.raises(ImageDecodeError, match="pixels exceeds the limit|decompression bomb"):
        decode_image(bad["bomb"].read_bytes(), DecodeLimits(max_pixels=40_000_000))


def test_limit_applies_to_header_size():
    data = _encode(picture(1, (100, 100)), "PNG")
    assert decode_image(data, DecodeLimits(max_pixels=10_000)).size == (100, 100)
    with pytest.raises(ImageDecodeError, match="exceeds the limit"):
        decode_image(data, DecodeLimits(max_pixels=9_999))
    with pytest.raises(ImageDecodeError, match="min-side"):
        decode_image(data, DecodeLimits(min_side=101))


@pytest.mark.parametrize("kind", ["one_pixel", "cmyk", "palette_alpha", "sixteen_bit", "animated"])
def test_unusual_images_decode_to_rgb(files, kind):
    _, odd = files
    image = decode_image(odd[kind].read_bytes())
    assert image.mode == "RGB"
    assert min(image.size) >= 1


def test_sixteen_bit_is_scaled_not_clipped(files):
    _, odd = files
    grey = np.asarray(decode_image(odd["sixteen_bit"].read_bytes()))[..., 0]
    # the source ramps 0..65535; clipping would make most of the image 255
    assert grey.min() == 0 and grey.max() == 255
    assert 100 < np.median(grey) < 155


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(decode_image(_encode(rgba, "PNG")))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_is_applied_before_crop():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    data = _encode(image, "JPEG", exif=exif.tobytes(), quality=100)
    decoded = decode_image(data)
    assert decoded.size == (20, 40)
    top = np.asarray(decode_image(data, crop=(0, 0, 20, 20))).mean(axis=(0, 1))
    assert top[2] > 200 and top[0] < 60  # the blue half is on top once oriented


@pytest.mark.parametrize(
    "box", [(0, 0, 0, 10), (5, 5, 3, 8), (0, 0, 41, 10), (-1, 0, 5, 5), (1, 2, 3)])
def test_bad_crop_boxes_are_rejected(box):
    with pytest.raises(ImageDecodeError, match="crop box"):
        decode_image(_encode(picture(3, (40, 20)), "PNG"), crop=box)


def test_draft_keeps_short_side_at_least_requested():
    data = _encode(picture(5, (1600, 1200)), "JPEG")
    image = decode_image(data, draft_size=224)
    assert min(image.size) >= 224 and image.size[0] < 1600


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()
