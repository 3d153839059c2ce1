"""The worker side of the GPU ingest path: read and hash each file, and hand JPEGs on as
bytes for the GPU to decode; every other file is decoded here, on the CPU path.

A JPEG goes to the GPU only when its header says nvJPEG can give the same pixels as the
CPU path (baseline file structure ending in EOI, RGB or greyscale, within the decode
limits). Anything else, broken files included, takes the CPU path in this worker, so its
pixels and its failure message are exactly what they are without a GPU.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import torch
from PIL import Image
from torch.utils.data import Dataset

from embedder.config import DecodeLimits
from embedder.decode import ImageDecodeError
from embedder.files import DecodedFile, FileRef, FileRejectedError, read_file
from embedder.inputs import ModelInput

EXIF_ORIENTATION = 0x0112
GPU_MODES = {"RGB", "L"}  # CMYK / YCCK JPEGs: nvJPEG's colours differ from Pillow's


@dataclass(frozen=True)
class JpegBytes:
    """A JPEG for the GPU: its bytes as a uint8 tensor (what decode_jpeg takes), its
    EXIF orientation and its pixel count (to bound one decode call's memory)."""

    data: torch.Tensor
    orientation: int
    pixels: int

    def as_bytes(self) -> bytes:
        return self.data.numpy().tobytes()


Payload = JpegBytes | torch.Tensor  # bytes for the GPU, or the CPU path's model input


@dataclass
class RawBatch:
    """Files of one batch in input order; ``payloads`` holds one entry per file without
    an error, in the same order."""

    files: list[DecodedFile]
    payloads: list[Payload]


def gpu_jpeg(data: bytes, limits: DecodeLimits) -> tuple[int, int] | None:
    """(EXIF orientation, pixels) when nvJPEG may decode ``data``, else None.

    Reads the header only. Files that fail any check are not judged here: the CPU path
    decodes them or says what is wrong with them.
    """
    if data[:3] != b"\xff\xd8\xff" or data[-2:] != b"\xff\xd9":
        return None  # not a JPEG, or truncated / trailing bytes: Pillow's verdict counts
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG" or image.mode not in GPU_MODES:
                return None
            width, height = image.size
            if width * height > limits.max_pixels or min(width, height) < limits.min_side:
                return None
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # noqa: BLE001 - the CPU path reports it
        return None
    return (orientation if orientation in range(1, 9) else 1), width * height


def load_raw(file: FileRef, to_input: ModelInput) -> tuple[DecodedFile, Payload | None]:
    """One file to (outcome, JPEG bytes for the GPU | CPU model input | None on failure)."""
    try:
        data = read_file(file.path, to_input.limits.max_file_bytes)
    except FileRejectedError as exc:
        return DecodedFile(file, None, str(exc)), None
    except OSError as exc:
        return DecodedFile(file, None, f"cannot read: {exc.strerror or exc}"), None
    sha256 = hashlib.sha256(data).hexdigest()
    jpeg = gpu_jpeg(data, to_input.limits)
    if jpeg is not None:
        tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return DecodedFile(file, sha256), JpegBytes(tensor, *jpeg)
    return cpu_decode(DecodedFile(file, sha256), data, to_input)


def cpu_decode(outcome: DecodedFile, data: bytes, to_input: ModelInput
               ) -> tuple[DecodedFile, torch.Tensor | None]:
    """The CPU path for one file, its failures as in ``embedder.files.load_file``."""
    try:
        return outcome, to_input(data)
    except ImageDecodeError as exc:
        return DecodedFile(outcome.file, outcome.sha256, str(exc)), None
    except Exception as exc:  # noqa: BLE001 - a preprocessing failure is this file's failure
        return DecodedFile(outcome.file, outcome.sha256,
                           f"preprocess failed: {type(exc).__name__}: {exc}"), None


class RawDataset(Dataset[tuple[DecodedFile, Payload | None]]):
    """Map-style dataset for DataLoader workers: read, hash, and sort JPEGs from the rest."""

    def __init__(self, files: list[FileRef] | tuple[FileRef, ...], to_input: ModelInput):
        self.files = files
        self.to_input = to_input

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[DecodedFile, Payload | None]:
        return load_raw(self.files[i], self.to_input)


def collate_raw(items: list[tuple[DecodedFile, Payload | None]]) -> RawBatch:
    return RawBatch([f for f, _ in items], [p for _, p in items if p is not None])
