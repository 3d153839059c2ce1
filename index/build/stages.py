"""The build's three stages as injected objects: list files, embed a batch, write a batch.

``pipeline.run_build`` drives whatever it is given; the local implementations
here run everything in this process (decoding in DataLoader workers), and a
distributed runner can hand in its own embedder and keep the same writer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from embedder.config import DecodeLimits, ModelIdentity
from index.build.sources import Listing, list_images
from index.build.writer import ShardWriter
from index.store.catalog import Catalog, ImageRecord
from index.store.directory import IndexDirectory

if TYPE_CHECKING:
    import torch

    from embedder.embedder import Embedder
    from embedder.files import DecodedBatch


class FileLister(Protocol):
    def list(self, inputs: Sequence[str]) -> Listing:
        """Image files under ``inputs``, each once, in a stable order."""


class BatchEmbedder(Protocol):
    @property
    def identity(self) -> ModelIdentity:
        """The model whose vectors this stage produces (checked against the index)."""

    @property
    def dim(self) -> int: ...

    def decoded(self, files: Sequence[ImageRecord]) -> Iterator[DecodedBatch]:
        """Files read, hashed and decoded into model inputs, in input order."""

    def encode(self, pixels: torch.Tensor) -> np.ndarray:
        """Model inputs to unit vectors."""


class BatchWriter(Protocol):
    def write(self, items: Sequence[tuple[ImageRecord, np.ndarray]]) -> None:
        """Store vectors for new files (durable once flushed)."""

    def keep(self, records: Sequence[ImageRecord]) -> None:
        """Files with unchanged bytes keep their ids."""

    def stored_vector(self, sha256: str) -> np.ndarray | None:
        """The stored vector of identical bytes, if any."""

    def flush(self) -> None:
        """Make everything written so far durable."""


WriterFactory = Callable[[IndexDirectory, Catalog, int, int], BatchWriter]


class LocalLister:
    """Directories, files and @list files on this machine's file system."""

    def list(self, inputs: Sequence[str]) -> Listing:
        return list_images(inputs)


@dataclass
class LocalEmbedder:
    """The model in this process, fed by ``workers`` decode processes.

    ``decode`` picks the ingest path (``embedder.gpu_pipeline``): ``auto`` decodes JPEGs on
    the GPU when the model is on CUDA, ``cpu`` keeps decoding in the workers, ``gpu``
    insists; ``compile`` runs the GPU path's fp16 image tower through torch.compile.
    """

    embedder: Embedder
    batch_size: int
    workers: int
    limits: DecodeLimits
    decode: str = "auto"
    compile: bool = False
    gpu: Any = field(init=False, default=None)  # the TensorPath, when the GPU path runs

    def __post_init__(self) -> None:
        if self.decode != "cpu":
            from embedder.gpu_pipeline import tensor_path

            self.gpu = tensor_path(self.embedder, self.decode, compile=self.compile)

    @property
    def identity(self) -> ModelIdentity:
        return self.embedder.identity

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def decoded(self, files: Sequence[ImageRecord]) -> Iterator[DecodedBatch]:
        if self.gpu is not None:
            return self.gpu.batches(files, self.limits, batch_size=self.batch_size,  # type: ignore[no-any-return]
                                    workers=self.workers)
        from embedder.files import decoded_batches
        from embedder.threads import paced

        batches = decoded_batches(files, self.embedder.model_input(self.limits),
                                  batch_size=self.batch_size, workers=self.workers,
                                  pin_memory=self.embedder.pin_memory)
        if self.workers and self.embedder.device.type == "cpu":
            # The model's threads and the decode workers share the cores: keep the
            # thread count that gives more images/s (embedder.threads).
            import torch

            from embedder.threads import HEAVY_PARAMS

            visual = self.embedder.model.visual
            assert isinstance(visual, torch.nn.Module)
            tower = sum(int(p.numel()) for p in visual.parameters())
            return paced(batches, heavy=tower > HEAVY_PARAMS)
        return batches

    def encode(self, pixels: torch.Tensor) -> np.ndarray:
        if self.gpu is not None:
            return self.gpu.encode(pixels)  # type: ignore[no-any-return]
        return self.embedder.encode_images(pixels)


def shard_writer(vector_dtype: str, shard_size: int) -> WriterFactory:
    """Writers that store shards of ``shard_size`` vectors as ``vector_dtype``."""
    def make(directory: IndexDirectory, catalog: Catalog, run_id: int, dim: int) -> BatchWriter:
        return ShardWriter(directory, catalog, run_id, dim, vector_dtype, shard_size)

    return make
