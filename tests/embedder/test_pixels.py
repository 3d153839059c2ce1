"""The fast preprocessing (uint8 pixels at the model's size, one normalisation per batch)
against open_clip's own transform, with the shipped untrained tiny model."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from embedder.config import DecodeLimits
from embedder.decode import decode_image
from embedder.files import decoded_batches, load_file
from embedder.inputs import ModelInput
from embedder.pixels import PixelPlan
from index.store.catalog import ImageRecord
from tests.imagegen import picture

SIZES = [(480, 480), (640, 480), (360, 500), (64, 64), (65, 200), (40, 30), (1000, 750)]


def _jpeg(seed: int, size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    picture(seed, size).save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.mark.parametrize("size", SIZES)
def test_plan_equals_the_model_transform_on_the_same_image(tiny_embedder, size):
    image = picture(sum(size), size)
    plan = tiny_embedder.pixel_plan
    ours = plan.normalise(torch.from_numpy(np.ascontiguousarray(plan.fit(image)))[None])[0]
    assert torch.equal(ours, tiny_embedder.transform(image))


def test_fast_path_stays_close_to_open_clip_on_the_full_decode(tiny_embedder):
    """Draft-mode JPEG decoding is the one approximation: pixels and untrained-tiny
    embeddings stay close to open_clip's preprocess of the full-size decode."""
    datas = [_jpeg(i, size) for i, size in enumerate(SIZES * 2)]
    to_input = tiny_embedder.model_input()
    fast = torch.stack([to_input(d) for d in datas])
    exact = torch.stack([tiny_embedder.transform(Image.open(io.BytesIO(d)).convert("RGB"))
                         for d in datas])
    diff = (fast - exact).abs()
    assert float(diff.mean()) < 0.01, float(diff.mean())  # measured 0.002
    assert float(diff.amax()) < 1.0, float(diff.amax())  # measured 0.5 (sharp edges)
    cosine = (tiny_embedder.encode_images(fast) * tiny_embedder.encode_images(exact)).sum(1)
    assert cosine.min() >= 0.999, cosine  # measured 0.99999


def test_batches_carry_uint8_pixels_that_embed_like_the_per_file_path(tiny_embedder, tmp_path):
    paths = []
    for i, size in enumerate(SIZES):
        paths.append(tmp_path / f"p{i}.jpg")
        paths[-1].write_bytes(_jpeg(i, size))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    paths.insert(3, broken)
    records = [ImageRecord(str(p), 0, 0) for p in paths]
    to_input = tiny_embedder.model_input()
    batches = list(decoded_batches(records, to_input, batch_size=4, workers=1))
    assert [f.file for b in batches for f in b.files] == records
    assert [f.file.path for b in batches for f in b.failed] == [str(broken)]
    pixels = torch.cat([b.pixels for b in batches])
    assert pixels.dtype == torch.uint8 and pixels.shape == (len(SIZES), 3, 64, 64)
    one_by_one = torch.stack([t for r in records if (t := load_file(r, to_input)[1]) is not None])
    assert torch.equal(tiny_embedder.pixel_plan.normalise(pixels), one_by_one)
    np.testing.assert_array_equal(tiny_embedder.encode_images(pixels),
                                  tiny_embedder.encode_images(one_by_one))


@pytest.mark.parametrize("cfg", [{"resize_mode": "longest"}, {"resize_mode": "squash"},
                                 {"size": (64, 96)}, {"interpolation": "lanczos"}])
def test_configs_the_plan_does_not_cover_keep_the_transform(tiny_embedder, tmp_path, cfg):
    assert PixelPlan.for_model({**tiny_embedder.preprocess_cfg, **cfg}) is None
    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg(1, (300, 200)))
    to_input = ModelInput(tiny_embedder.transform, DecodeLimits(), 64)
    [batch] = decoded_batches([ImageRecord(str(path), 0, 0)], to_input, batch_size=2, workers=0)
    expected = tiny_embedder.transform(decode_image(path.read_bytes(), draft_size=64))
    assert batch.pixels.dtype == torch.float32 and torch.equal(batch.pixels[0], expected)
