"""The GPU ingest path: workers read bytes, nvJPEG decodes, the GPU resizes and embeds.

With the CPU path one core decodes, resizes and normalises ~250 images/s, so a build
on a GPU is bound by its CPU cores long before the model. Here the decode workers only
read and hash files (``embedder.raw_files``); JPEGs are decoded in batches by
``torchvision.io.decode_jpeg(..., device="cuda")`` (nvJPEG) and preprocessed as batched
tensor ops (``embedder.tensor_preprocess``), and the image tower runs in fp16. Files that
are not JPEGs, or that nvJPEG refuses, take the CPU path per file, so no file is lost and
every failure keeps its reason.

Everything here is device-agnostic except the choice in ``tensor_path``: on the CPU the
same code decodes with libjpeg-turbo, which is how it is tested without a GPU.
"""

from __future__ import annotations

import copy
import logging
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from common.errors import VisearchError
from embedder.config import DecodeLimits
from embedder.embedder import Embedder, _normalise
from embedder.files import DecodedBatch, FileRef
from embedder.inputs import ModelInput
from embedder.raw_files import JpegBytes, RawBatch, RawDataset, collate_raw, cpu_decode
from embedder.tensor_preprocess import TensorPreprocess, orient

log = logging.getLogger("visearch.embedder")

DECODE_MODES = ("auto", "cpu", "gpu")
# One decode_jpeg call decodes at most this many pixels (uint8 RGB: 3 bytes each), so a
# batch of 40 MP photos does not take gigabytes of GPU memory at once.
MAX_PIXELS_PER_CALL = 128_000_000


class GpuDecodeUnavailableError(VisearchError):
    """--decode gpu was asked for where it cannot run."""


class BatchDecoder:
    """A RawBatch -> DecodedBatch with its pixels on ``device``."""

    def __init__(self, preprocess: TensorPreprocess, to_input: ModelInput,
                 device: torch.device, max_pixels_per_call: int = MAX_PIXELS_PER_CALL):
        self.preprocess = preprocess
        self.to_input = to_input
        self.device = device
        self.max_pixels_per_call = max_pixels_per_call
        self.cpu_fallbacks = 0  # JPEGs the device decoder refused, decoded on the CPU path
        self._local = threading.local()

    def __call__(self, raw: RawBatch) -> DecodedBatch:
        if self.device.type != "cuda":
            return self._decode(raw)
        stream = getattr(self._local, "stream", None)
        if stream is None:
            stream = self._local.stream = torch.cuda.Stream(self.device)
        with torch.cuda.stream(stream):
            batch = self._decode(raw)
        # This thread waits, not the model's: the consumer may then read the pixels on
        # its own stream (ingest_batches records that use for the caching allocator).
        stream.synchronize()
        return batch

    def _decode(self, raw: RawBatch) -> DecodedBatch:
        ok = [i for i, f in enumerate(raw.files) if f.error is None]
        files = list(raw.files)
        jpegs = [k for k, p in enumerate(raw.payloads) if isinstance(p, JpegBytes)]
        decoded = self.decode_jpegs([raw.payloads[k] for k in jpegs])  # type: ignore[misc]
        images: dict[int, torch.Tensor] = {}  # payload index -> uint8 (3, H, W) on device
        ready: dict[int, torch.Tensor] = {}  # payload index -> CPU path model input
        for k, image in zip(jpegs, decoded, strict=True):
            jpeg = raw.payloads[k]
            assert isinstance(jpeg, JpegBytes)
            if image is not None:
                images[k] = orient(image, jpeg.orientation)
                continue
            self.cpu_fallbacks += 1
            outcome, pixels = cpu_decode(files[ok[k]], jpeg.as_bytes(), self.to_input)
            files[ok[k]] = outcome
            if pixels is not None:
                ready[k] = pixels
        for k, p in enumerate(raw.payloads):
            if isinstance(p, torch.Tensor):
                ready[k] = p
        # rows: payloads whose file is still ok, in input order
        row = {k: r for r, k in enumerate(sorted([*images, *ready]))}
        out = torch.empty((len(row), 3, *self.preprocess.size), dtype=torch.float32,
                          device=self.device)
        if images:
            rows = [row[k] for k in images]
            out[rows] = self.preprocess(list(images.values()))
        if ready:
            rows = [row[k] for k in ready]
            out[rows] = torch.stack(list(ready.values())).to(self.device, non_blocking=True)
        return DecodedBatch(files, out)

    def decode_jpegs(self, jpegs: Sequence[JpegBytes]) -> list[torch.Tensor | None]:
        """Decoded uint8 (3, H, W) per JPEG, None where the decoder refused it."""
        out: list[torch.Tensor | None] = []
        for chunk in _chunks(jpegs, self.max_pixels_per_call):
            out.extend(self._decode_chunk([j.data for j in chunk]))
        return out

    def _decode_chunk(self, data: list[torch.Tensor]) -> list[torch.Tensor | None]:
        from torchvision.io import ImageReadMode, decode_jpeg

        try:  # one batched call; it returns nothing when any file fails
            return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device))
        except Exception:  # noqa: BLE001 - find which file, below
            if len(data) == 1:
                return [None]
        single: list[torch.Tensor | None] = []
        for one in data:
            try:
                single.append(decode_jpeg(one, mode=ImageReadMode.RGB, device=self.device))
            except Exception:  # noqa: BLE001 - this file takes the CPU path
                single.append(None)
        return single


def _chunks(jpegs: Sequence[JpegBytes], budget: int) -> Iterator[Sequence[JpegBytes]]:
    start, total = 0, 0
    for i, jpeg in enumerate(jpegs):
        if total and total + jpeg.pixels > budget:
            yield jpegs[start:i]
            start, total = i, 0
        total += jpeg.pixels
    if start < len(jpegs):
        yield jpegs[start:]


def ingest_batches(files: Sequence[FileRef], decoder: BatchDecoder, *, batch_size: int,
                   workers: int, threads: int = 2) -> Iterator[DecodedBatch]:
    """Batches in input order: ``workers`` processes read files, ``threads`` threads run
    the device decoder on batches ahead of the model (0: in this thread)."""
    if not files:
        return
    loader = DataLoader(
        RawDataset(list(files), decoder.to_input), batch_size=batch_size, num_workers=workers,
        collate_fn=collate_raw, worker_init_fn=_quiet_worker if workers else None,
        prefetch_factor=4 if workers else None,
    )
    stream = torch.cuda.current_stream(decoder.device) if decoder.device.type == "cuda" else None
    for batch in _ordered_map(decoder, loader, threads):
        if stream is not None and batch.pixels.numel():
            batch.pixels.record_stream(stream)
        yield batch


def _quiet_worker(_: int) -> None:
    # Oversized images are rejected by our own limit; Pillow's warning is noise.
    from PIL import Image

    warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def _ordered_map(fn: Callable[[RawBatch], DecodedBatch], items: Iterable[RawBatch],
                 threads: int) -> Iterator[DecodedBatch]:
    if threads <= 0:
        yield from map(fn, items)
        return
    pending: deque[Future[DecodedBatch]] = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="visearch-decode") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) > threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


class HalfImageEncoder:
    """The image tower with fp16 weights (no per-op autocast casts), optionally compiled
    with ``torch.compile`` (CUDA graphs: pays on long builds, compiles for ~a minute)."""

    def __init__(self, embedder: Embedder, compile: bool = False):
        visual: torch.nn.Module = embedder.model.visual  # type: ignore[assignment]
        self.device = embedder.device
        self.visual = copy.deepcopy(visual).to(self.device).half().eval()
        self.forward: Callable[[torch.Tensor], torch.Tensor] = self.visual
        if compile:
            self.forward = torch.compile(self.visual, mode="reduce-overhead")  # type: ignore[assignment]

    def __call__(self, pixels: torch.Tensor) -> np.ndarray:
        if len(pixels) == 0:
            return np.zeros((0, int(self.visual.output_dim)), dtype=np.float32)  # type: ignore[arg-type]
        with torch.inference_mode():
            return _normalise(self.forward(pixels.to(self.device, torch.float16)))


@dataclass
class TensorPath:
    """The GPU ingest path for one embedder: decode on its device, encode in fp16."""

    embedder: Embedder
    preprocess: TensorPreprocess
    encode: Callable[[torch.Tensor], np.ndarray]
    threads: int = 2

    def decoder(self, limits: DecodeLimits) -> BatchDecoder:
        return BatchDecoder(self.preprocess, self.embedder.model_input(limits),
                            self.embedder.device)

    def batches(self, files: Sequence[FileRef], limits: DecodeLimits, *, batch_size: int,
                workers: int) -> Iterator[DecodedBatch]:
        return ingest_batches(files, self.decoder(limits), batch_size=batch_size,
                              workers=workers, threads=self.threads)


def tensor_path(embedder: Embedder, decode: str = "auto", *, compile: bool = False,
                device_agnostic: bool = False) -> TensorPath | None:
    """The GPU ingest path when ``decode`` and the machine call for it, else None (the CPU
    decode path). ``auto``: on CUDA with a model whose preprocessing has a tensor form;
    ``gpu``: that or an error; ``cpu``: never. ``device_agnostic`` allows a CPU device
    (tests, and a fallback measurement in the benchmark).

    Raises:
        GpuDecodeUnavailableError: ``gpu`` where it cannot run.
    """
    if decode not in DECODE_MODES:
        raise ValueError(f"unknown decode mode {decode!r}: use {', '.join(DECODE_MODES)}")
    if decode == "cpu":
        return None
    preprocess = TensorPreprocess.from_cfg(embedder.preprocess_cfg)
    problem = None
    if embedder.device.type != "cuda" and not device_agnostic:
        problem = "the model is not on a CUDA device (--device)"
    elif preprocess is None:
        problem = f"the model's preprocessing {embedder.preprocess_cfg} has no tensor form here"
    if problem:
        if decode == "gpu":
            raise GpuDecodeUnavailableError(f"--decode gpu cannot run: {problem}; use "
                                            f"--decode auto or cpu")
        return None
    assert preprocess is not None
    fp16 = embedder.device.type == "cuda" and embedder.precision == "fp16"
    encode = HalfImageEncoder(embedder, compile) if fp16 else embedder.encode_images
    log.info("GPU ingest path: JPEGs decoded on %s, %s encoder%s", embedder.device,
             "fp16" if fp16 else embedder.precision, ", compiled" if compile and fp16 else "")
    return TensorPath(embedder, preprocess, encode)

