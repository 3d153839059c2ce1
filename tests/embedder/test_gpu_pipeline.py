"""The GPU ingest path: batched tensor preprocessing against open_clip's own transform, the
worker's JPEG sorting, and the whole path (decode, orient, resize, fall back per file) run
on the CPU, where decode_jpeg uses libjpeg-turbo. The nvJPEG runs are marked `gpu`.

Every model here is the shipped tiny model: **untrained** random weights.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image, ImageOps

from embedder import DecodeLimits, EmbedderConfig
from embedder.files import decoded_batches
from embedder.gpu_pipeline import (
    BatchDecoder,
    GpuDecodeUnavailableError,
    ingest_batches,
    tensor_path,
)
from embedder.raw_files import gpu_jpeg
from embedder.tensor_preprocess import TensorPreprocess, orient
from tests.imagegen import picture, write_bad_and_odd, write_pictures

CLIP_CFG = {"size": (224, 224), "mode": "RGB", "mean": (0.48145466, 0.4578275, 0.40821073),
            "std": (0.26862954, 0.26130258, 0.27577711), "interpolation": "bicubic",
            "resize_mode": "shortest", "fill_color": 0}
SIZES = [(96, 72), (72, 96), (300, 200), (201, 301), (224, 224), (64, 64), (50, 40), (1, 1),
         (640, 480)]


@dataclass(frozen=True)
class Ref:
    path: str


def as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95, **kwargs)
    return out.getvalue()


def bad_huffman_jpeg() -> bytes:
    """A JPEG whose header reads fine but whose Huffman table libjpeg rejects: it passes the
    worker's header check, the batched decoder refuses it, the CPU path names the error."""
    data = bytearray(jpeg_bytes(picture(5, (200, 150))))
    at = data.index(b"\xff\xc4")
    data[at + 5:at + 21] = b"\xff" * 16
    return bytes(data)


@pytest.mark.parametrize("cfg", [CLIP_CFG, {**CLIP_CFG, "size": (64, 64)},
                                 {**CLIP_CFG, "interpolation": "bilinear"},
                                 {**CLIP_CFG, "resize_mode": "squash"}],
                         ids=["vit-b-32", "tiny", "bilinear", "squash"])
def test_batched_preprocess_matches_open_clip(cfg):
    reference = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    preprocess = TensorPreprocess.from_cfg(cfg)
    assert preprocess is not None
    images = [picture(i, size) if min(size) > 8 else Image.new("RGB", size, (10, 200, 30))
              for i, size in enumerate(SIZES)]
    images += [picture(99, (300, 200)), picture(98, (300, 200))]  # one size group of three
    ours = preprocess([as_tensor(im) for im in images])
    theirs = torch.stack([reference(im) for im in images])
    assert ours.shape == theirs.shape == (len(images), 3, *cfg["size"])
    diff = (ours - theirs).abs()
    # PIL and torch bicubic differ by a rounding step here and there (1/255 / std ~ 0.015),
    # and by a few levels at a few sharp edges of small images scaled up 5x
    assert float(diff.mean()) < 0.003, float(diff.mean())
    assert float((diff > 0.05).float().mean()) < 0.005
    assert float(diff.max()) < 0.3, float(diff.max())
    assert preprocess([as_tensor(images[0])], torch.float16).dtype == torch.float16


def test_preprocessing_without_a_tensor_form_keeps_the_cpu_path():
    assert TensorPreprocess.from_cfg({**CLIP_CFG, "resize_mode": "longest"}) is None
    assert TensorPreprocess.from_cfg({**CLIP_CFG, "size": (224, 256)}) is None
    assert TensorPreprocess.from_cfg({**CLIP_CFG, "size": 224}).size == (224, 224)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_exif_transpose(orientation):
    image = picture(3, (40, 30))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = jpeg_bytes(image, exif=exif.tobytes())
    assert gpu_jpeg(data, DecodeLimits()) == (orientation, 40 * 30)
    source = Image.open(io.BytesIO(data))
    expected = np.asarray(ImageOps.exif_transpose(source))
    decoded = as_tensor(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(orient(decoded, orientation).permute(1, 2, 0).numpy(), expected)


def test_only_plain_jpegs_within_limits_go_to_the_device(tmp_path):
    bad, odd = write_bad_and_odd(tmp_path)
    plain = jpeg_bytes(picture(1, (96, 72)))
    assert gpu_jpeg(plain, DecodeLimits()) == (1, 96 * 72)
    assert gpu_jpeg(jpeg_bytes(picture(1).convert("L")), DecodeLimits()) == (1, 96 * 72)
    assert gpu_jpeg(plain, DecodeLimits(max_pixels=96 * 72 - 1)) is None
    assert gpu_jpeg(plain, DecodeLimits(min_side=73)) is None
    for path in [*bad.values(), *odd.values()]:  # truncated, random, text, CMYK, PNG, GIF...
        assert gpu_jpeg(path.read_bytes(), DecodeLimits()) is None, path.name


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> list[Path]:
    """JPEGs (plain, rotated, greyscale, larger), PNGs, and broken and odd files."""
    folder = tmp_path_factory.mktemp("mixed")
    paths = write_pictures(folder, 12)
    bad, odd = write_bad_and_odd(folder / "odd")
    rotated = folder / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated.write_bytes(jpeg_bytes(picture(40, (120, 80)), exif=exif.tobytes()))
    grey = folder / "grey.jpg"
    grey.write_bytes(jpeg_bytes(picture(41, (90, 70)).convert("L")))
    large = folder / "large.jpg"
    large.write_bytes(jpeg_bytes(picture(42, (300, 220))))
    huffman = folder / "huffman.jpg"
    huffman.write_bytes(bad_huffman_jpeg())
    return [*paths[:5], huffman, *bad.values(), rotated, *paths[5:], grey, *odd.values(), large]


def outcomes(batches, plan=None) -> tuple[list[tuple[str, str | None, str | None]],
                                         torch.Tensor]:
    """Files and model-input tensors; uint8 pixels (the CPU path where ``plan`` covers the
    model) normalised the way the embedder does per batch."""
    files, pixels = [], []
    for batch in batches:
        files += [(f.file.path, f.sha256, f.error) for f in batch.files]
        tensor = batch.pixels.cpu()
        pixels.append(plan.normalise(tensor) if tensor.dtype == torch.uint8 else tensor.float())
    return files, torch.cat(pixels)


@pytest.mark.parametrize("threads", [0, 2])
def test_tensor_path_on_the_cpu_equals_the_cpu_decode_path(tiny_embedder, mixed, threads):
    refs = [Ref(str(p)) for p in mixed]
    expected, cpu_pixels = outcomes(decoded_batches(
        refs, tiny_embedder.model_input(), batch_size=5, workers=0), tiny_embedder.pixel_plan)
    path = tensor_path(tiny_embedder, "gpu", device_agnostic=True)
    assert path is not None
    decoder = BatchDecoder(path.preprocess, tiny_embedder.model_input(), torch.device("cpu"))
    got, pixels = outcomes(ingest_batches(refs, decoder, batch_size=5, workers=0,
                                          threads=threads))
    # the same files in the same order, the same hashes, the same failures and reasons
    assert got == expected
    assert sum(e is not None for _, _, e in got) == 6  # 5 broken files and the bad Huffman
    assert decoder.cpu_fallbacks == 1  # the bad Huffman table: refused, then the CPU path
    assert pixels.shape == cpu_pixels.shape
    assert float((pixels - cpu_pixels).abs().mean()) < 0.01
    vectors = tiny_embedder.encode_images(pixels)
    reference = tiny_embedder.encode_images(cpu_pixels)
    assert float((vectors * reference).sum(axis=1).min()) > 0.999


def test_decode_workers_hand_jpegs_over_as_bytes(tiny_embedder, mixed):
    refs = [Ref(str(p)) for p in mixed]
    path = tensor_path(tiny_embedder, "gpu", device_agnostic=True)
    decoder = BatchDecoder(path.preprocess, tiny_embedder.model_input(), torch.device("cpu"))
    one_by_one, _ = outcomes(ingest_batches(refs, decoder, batch_size=64, workers=0))
    in_workers, _ = outcomes(ingest_batches(refs, decoder, batch_size=4, workers=2))
    assert in_workers == one_by_one


def test_decode_mode_choice_on_a_machine_without_cuda(tiny_embedder):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert tensor_path(tiny_embedder, "auto") is None
    assert tensor_path(tiny_embedder, "cpu") is None
    with pytest.raises(GpuDecodeUnavailableError, match="--decode gpu cannot run"):
        tensor_path(tiny_embedder, "gpu")
    with pytest.raises(ValueError, match="unknown decode mode"):
        tensor_path(tiny_embedder, "nvjpeg")


# --- nvJPEG on a CUDA device ---------------------------------------------------------------

@pytest.fixture(scope="module")
def cuda_tiny():
    from embedder.embedder import load_embedder

    return load_embedder(EmbedderConfig(model="tiny", device="cuda"))


@pytest.mark.gpu
def test_nvjpeg_path_equals_the_cpu_decode_path(tiny_embedder, cuda_tiny, mixed):
    refs = [Ref(str(p)) for p in mixed]
    expected, cpu_pixels = outcomes(decoded_batches(
        refs, tiny_embedder.model_input(), batch_size=5, workers=0), tiny_embedder.pixel_plan)
    path = tensor_path(cuda_tiny, "auto")
    assert path is not None and path.preprocess.size == (64, 64)
    got, pixels = outcomes(path.batches(refs, DecodeLimits(), batch_size=5, workers=2))
    assert got == expected
    # nvJPEG's IDCT and upsampling differ from libjpeg-turbo's by a level here and there
    assert float((pixels - cpu_pixels).abs().mean()) < 0.03
    vectors = path.encode(pixels.cuda())
    reference = tiny_embedder.encode_images(cpu_pixels)
    assert float((vectors * reference).sum(axis=1).min()) > 0.99


@pytest.mark.gpu
def test_build_decodes_on_the_gpu_and_reports_the_same_failures(cuda_tiny, mixed, tmp_path):
    from index.build.pipeline import BuildConfig, run_build
    from index.build.publish import IndexingOptions

    folder = tmp_path / "in"
    folder.mkdir()
    for path in mixed:
        shutil.copy(path, folder / path.name)
    reports = {}
    for decode in ("cpu", "gpu"):
        cfg = BuildConfig(inputs=(str(folder),), out=tmp_path / f"{decode}.idx",
                          embedder=EmbedderConfig(model="tiny", device="cuda"), batch_size=8,
                          workers=2, decode=decode, indexing=IndexingOptions(progress=False))
        reports[decode] = run_build(cfg, embedder=cuda_tiny)
    assert sorted(reports["gpu"].failed) == sorted(reports["cpu"].failed)
    assert reports["gpu"].ingest.stored == reports["cpu"].ingest.stored > 0


@pytest.mark.gpu
def test_fp16_image_tower_matches_autocast(cuda_tiny, mixed):
    from embedder.gpu_pipeline import HalfImageEncoder

    images = [picture(i, (120, 90)) for i in range(16)]
    pixels = torch.stack([cuda_tiny.preprocess(im) for im in images]).cuda()
    half = HalfImageEncoder(cuda_tiny)(pixels)
    autocast = cuda_tiny.encode_images(pixels)
    assert float((half * autocast).sum(axis=1).min()) > 0.999
