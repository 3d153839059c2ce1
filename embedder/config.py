"""Configuration of the CLIP embedder, shared by the build and the server."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.machine import usable_cores

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
TINY_MODEL = "tiny"
DEFAULT_MAX_PIXELS = 40_000_000
MIB = 1 << 20
DEFAULT_MAX_FILE_MB = 100


def default_workers() -> int:
    """Decode workers: one per core, so the model never waits on one core's decoding."""
    return max(1, min(8, usable_cores()))


@dataclass(frozen=True)
class EmbedderConfig:
    """Which model to load and how to run it.

    Args:
        model: open_clip architecture name, ``hf-hub:org/repo``, ``local-dir:PATH`` or ``tiny``.
        pretrained: open_clip weight tag (or a file path); ignored for ``tiny`` and schema names.
        checkpoint: local weights file; takes precedence over ``pretrained``.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda[:N]``.
        precision: ``auto`` (fp16 autocast on CUDA, fp32 on CPU), ``fp32``, ``fp16`` or ``bf16``.
        hub_timeout: seconds to wait for the model hub before giving up on a download.
    """

    model: str = DEFAULT_MODEL
    pretrained: str | None = DEFAULT_PRETRAINED
    checkpoint: str | None = None
    device: str = "auto"
    precision: str = "auto"
    hub_timeout: float = 5.0


@dataclass(frozen=True)
class DecodeLimits:
    """What the decoder accepts; larger or smaller images are rejected before decoding.

    ``max_file_bytes`` caps the bytes read for one image, checked before reading:
    no usable photo is that large, and a file that is (a 3 GB sparse ``.jpg``) would
    otherwise be held in memory whole.
    """

    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = 1
    max_file_bytes: int = DEFAULT_MAX_FILE_MB * MIB


@dataclass(frozen=True)
class ModelIdentity:
    """What an index records about the model that built it (see the manifest).

    ``finetune`` is the lineage of a model that `visearch finetune` trained: the base
    model's identity, the training settings, the weights file (a path relative to the
    index directory, so the index can be moved) and whether text queries are accepted.
    """

    name: str
    pretrained: str | None
    checkpoint: str | None
    weights_sha256: str
    embed_dim: int
    untrained: bool
    preprocess: dict[str, Any]
    finetune: dict[str, Any] | None = None

    @property
    def accepts_text(self) -> bool:
        """False for a fine-tuned image tower whose text alignment was not kept."""
        return self.finetune is None or bool(self.finetune.get("text_queries"))

    def embedder_config(self, *, device: str = "auto", precision: str = "auto",
                        checkpoint: str | None = None, pretrained: str | None = None,
                        base_dir: str | Path | None = None) -> EmbedderConfig:
        """The config that loads this model again (``checkpoint`` and ``pretrained`` override
        the recorded ones, e.g. the same weights at another path). A relative recorded
        checkpoint (fine-tuned weights inside an index) is taken relative to ``base_dir``,
        the index directory."""
        recorded = self.checkpoint
        if recorded and base_dir is not None and not os.path.isabs(recorded):
            recorded = str(Path(base_dir) / recorded)
        return EmbedderConfig(model=self.name, pretrained=pretrained or self.pretrained,
                              checkpoint=checkpoint or recorded, device=device,
                              precision=precision)
