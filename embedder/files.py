"""Read, hash, decode and preprocess files in DataLoader worker processes.

The model runs in the main process; decoding in workers keeps it fed. Each file
comes back either as a tensor or as a failure with its reason, never as an
exception that would stop the stream.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from common.errors import VisearchError
from common.paths import not_regular
from embedder.config import MIB
from embedder.decode import ImageDecodeError
from embedder.inputs import ModelInput


class FileRejectedError(VisearchError):
    """A file that is not read at all: not a regular file, or over --max-file-mb."""


class FileRef(Protocol):
    """Anything naming a file to read; the caller's record travels through unchanged."""

    @property
    def path(self) -> str: ...


@dataclass(frozen=True)
class DecodedFile:
    """The outcome for one file: its content hash, and an error when it failed."""

    file: Any  # the caller's FileRef
    sha256: str | None
    error: str | None = None


@dataclass
class DecodedBatch:
    """Files of one batch in input order; ``pixels`` holds a row per file without error."""

    files: list[DecodedFile]
    pixels: torch.Tensor

    @property
    def ok(self) -> list[DecodedFile]:
        return [f for f in self.files if f.error is None]

    @property
    def failed(self) -> list[DecodedFile]:
        return [f for f in self.files if f.error is not None]

    def pin_memory(self) -> DecodedBatch:
        # DataLoader(pin_memory=True) calls this on custom batch types.
        return DecodedBatch(self.files, self.pixels.pin_memory())


class DecodeDataset(Dataset[tuple[DecodedFile, torch.Tensor | None]]):
    """Map-style dataset over files: read once, hash and decode from the same bytes."""

    def __init__(self, files: Sequence[FileRef], to_input: ModelInput):
        self.files = files
        self.to_input = to_input

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[DecodedFile, torch.Tensor | None]:
        return load_file(self.files[i], self.to_input)


def load_file(file: FileRef, to_input: ModelInput) -> tuple[DecodedFile, torch.Tensor | None]:
    """One file to (outcome, model input or None)."""
    try:
        data = read_file(file.path, to_input.limits.max_file_bytes)
    except FileRejectedError as exc:
        return DecodedFile(file, None, str(exc)), None
    except OSError as exc:
        return DecodedFile(file, None, f"cannot read: {exc.strerror or exc}"), None
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        pixels = to_input(data)
    except ImageDecodeError as exc:
        return DecodedFile(file, sha256, str(exc)), None
    except Exception as exc:  # noqa: BLE001 - a preprocessing failure is this file's failure
        return DecodedFile(file, sha256, f"preprocess failed: {type(exc).__name__}: {exc}"), None
    return DecodedFile(file, sha256), pixels


def read_file(path: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, checked before reading.

    The file is opened non-blocking (a FIFO would block until a writer came) and
    checked through the open descriptor, so a file swapped since it was listed is
    checked too; at most ``max_bytes + 1`` bytes are read, so one that grows stops.

    Raises:
        FileRejectedError: not a regular file, or larger than ``max_bytes``.
        OSError: it cannot be opened or read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        problem = not_regular(st.st_mode)
        if problem:
            raise FileRejectedError(problem)
        if st.st_size > max_bytes:
            raise FileRejectedError(f"file is {_size(st.st_size)}, over --max-file-mb "
                                    f"{max_bytes / MIB:g}")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise FileRejectedError(f"file grew past --max-file-mb {max_bytes / MIB:g} while "
                                f"being read")
    return data


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", MIB), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def collate(items: list[tuple[DecodedFile, torch.Tensor | None]]) -> DecodedBatch:
    tensors = [t for _, t in items if t is not None]
    pixels = torch.stack(tensors) if tensors else torch.zeros(0)
    return DecodedBatch([f for f, _ in items], pixels)


def _quiet_worker(_: int) -> None:
    # Oversized images are rejected by our own limit; Pillow's warning is noise.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def decoded_batches(files: Sequence[FileRef], to_input: ModelInput, *, batch_size: int,
                    workers: int, pin_memory: bool = False) -> Iterator[DecodedBatch]:
    """Batches in input order, decoded by ``workers`` processes (0: in this process)."""
    if not files:
        return iter(())
    loader = DataLoader(
        DecodeDataset(files, to_input),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        worker_init_fn=_quiet_worker if workers else None,
        prefetch_factor=4 if workers else None,
    )
    return iter(loader)
