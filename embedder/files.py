"""Read, hash, decode and preprocess files in DataLoader worker processes.

The model runs in the main process; decoding in workers keeps it fed. Each file
comes back either as a row of its batch's pixels or as a failure with its reason,
never as an exception that would stop the stream.

A worker decodes a whole batch at once (``DecodeDataset.__getitems__``) into one
uint8 array at the model's input size (embedder.pixels), and sends back only that
array, the hashes and the failures: the file records stay in the main process, and
the model's side normalises the batch in one op. The array travels pickled through the
worker's pipe, not as a shared-memory tensor: for a batch of a few hundred KB to a few
MB, passing a shared-memory file descriptor (a socket connection per batch) costs the
main process more than the copy.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from common.errors import VisearchError
from common.paths import not_regular
from embedder.config import MIB
from embedder.decode import ImageDecodeError
from embedder.inputs import ModelInput

log = logging.getLogger("visearch.embedder")


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
    pixels: torch.Tensor  # uint8 from a PixelPlan (normalised by the encoder), else float

    @property
    def ok(self) -> list[DecodedFile]:
        return [f for f in self.files if f.error is None]

    @property
    def failed(self) -> list[DecodedFile]:
        return [f for f in self.files if f.error is not None]

    def pin_memory(self) -> DecodedBatch:
        # DataLoader(pin_memory=True) calls this on custom batch types.
        return DecodedBatch(self.files, self.pixels.pin_memory())


@dataclass
class FetchedBatch:
    """What a worker sends back for one batch: positions in the file list, hashes,
    failures, and the pixels of the files without failure (uint8 array, or float model
    inputs without a PixelPlan)."""

    indices: list[int]
    sha256: list[str | None]
    errors: list[str | None]
    pixels: np.ndarray | torch.Tensor

    def pin_memory(self) -> FetchedBatch:
        return FetchedBatch(self.indices, self.sha256, self.errors,
                            torch.as_tensor(self.pixels).pin_memory())

    def resolve(self, files: Sequence[Any]) -> DecodedBatch:
        """Attach the main process's own file records."""
        return DecodedBatch([DecodedFile(files[i], sha, error) for i, sha, error
                             in zip(self.indices, self.sha256, self.errors, strict=True)],
                            torch.as_tensor(self.pixels))


class DecodeDataset(Dataset[tuple[DecodedFile, torch.Tensor | None]]):
    """Map-style dataset over files: read once, hash and decode from the same bytes."""

    def __init__(self, files: Sequence[FileRef], to_input: ModelInput):
        self.files = files
        self.to_input = to_input

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[DecodedFile, torch.Tensor | None]:
        return load_file(self.files[i], self.to_input)

    def __getitems__(self, indices: list[int]) -> FetchedBatch:
        """A batch decoded straight into one tensor (DataLoader calls this when present)."""
        to_input, plan = self.to_input, self.to_input.plan
        hashes: list[str | None] = []
        errors: list[str | None] = []
        if plan is None:
            rows = []
            for i in indices:
                sha256, error, tensor = _load(self.files[i].path, to_input, to_input)
                hashes.append(sha256)
                errors.append(error)
                if tensor is not None:
                    rows.append(tensor)
            return FetchedBatch(indices, hashes, errors,
                                torch.stack(rows) if rows else torch.zeros(0))
        out = np.empty((len(indices), 3, plan.size, plan.size), dtype=np.uint8)
        ok = 0
        for i in indices:
            sha256, error, pixels = _load(self.files[i].path, to_input, to_input.pixels)
            hashes.append(sha256)
            errors.append(error)
            if pixels is not None:
                out[ok] = pixels
                ok += 1
        return FetchedBatch(indices, hashes, errors, out[:ok] if ok < len(out) else out)


def load_file(file: FileRef, to_input: ModelInput) -> tuple[DecodedFile, torch.Tensor | None]:
    """One file to (outcome, normalised model input or None)."""
    sha256, error, pixels = _load(file.path, to_input, to_input)
    return DecodedFile(file, sha256, error), pixels


Decoded = TypeVar("Decoded")


def _load(path: str, to_input: ModelInput, decode: Callable[[bytes], Decoded]
          ) -> tuple[str | None, str | None, Decoded | None]:
    """Read once, hash and ``decode`` the same bytes: (sha256, error, decoded)."""
    try:
        data = read_file(path, to_input.limits.max_file_bytes)
    except FileRejectedError as exc:
        return None, str(exc), None
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}", None
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        return sha256, None, decode(data)
    except ImageDecodeError as exc:
        return sha256, str(exc), None
    except Exception as exc:  # noqa: BLE001 - a preprocessing failure is this file's failure
        return sha256, f"preprocess failed: {type(exc).__name__}: {exc}", None


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
    try:
        st = os.fstat(fd)
        problem = not_regular(st.st_mode)
        if problem:
            raise FileRejectedError(problem)
        if st.st_size > max_bytes:
            raise FileRejectedError(f"file is {_size(st.st_size)}, over --max-file-mb "
                                    f"{max_bytes / MIB:g}")
        data = _read_at_most(fd, st.st_size, max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise FileRejectedError(f"file grew past --max-file-mb {max_bytes / MIB:g} while "
                                f"being read")
    return data


def _read_at_most(fd: int, expected: int, limit: int) -> bytes:
    """Up to ``limit`` bytes: one read of the expected size (+1 to see growth) in the usual
    case, without a buffered reader or a buffer the size of the cap."""
    chunks, total = [], 0
    want = min(expected + 1, limit)
    while total < limit:
        chunk = os.read(fd, max(want - total, min(1 << 20, limit - total)))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _size(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", MIB), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _as_is(batch: Any) -> Any:
    return batch  # a FetchedBatch: __getitems__ already made it


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
        collate_fn=_as_is,
        pin_memory=pin_memory,
        worker_init_fn=_quiet_worker if workers else None,
        prefetch_factor=4 if workers else None,
    )
    return _in_order(loader, files, -(-len(files) // batch_size))


EXIT_THREAD = "decode-workers-exit"


def _in_order(loader: DataLoader, files: Sequence[FileRef], count: int
              ) -> Iterator[DecodedBatch]:
    """The ``count`` batches; then the workers' exit (30-60 ms: the loader joins each
    process) is waited for on a thread, while the build writes and publishes, instead of
    in the main thread's last ``next``."""
    batches = iter(loader)
    for _ in range(count):
        yield next(batches).resolve(files)
    threading.Thread(target=_finish, args=(batches,), name=EXIT_THREAD, daemon=True).start()


def _finish(batches: Iterator[Any]) -> None:
    try:
        for _ in batches:  # nothing is left: this stops the workers and joins them
            pass
    except Exception:  # noqa: BLE001 - every batch was delivered; nothing to report to
        log.debug("decode workers ended uncleanly", exc_info=True)
