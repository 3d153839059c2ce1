"""Configuration of the CLIP embedder, shared by the build and the server."""

from __future__ import annotations

from dataclasses import dataclass
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
    """What an index records about the model that built it (see the manifest)."""

    name: str
    pretrained: str | None
    checkpoint: str | None
    weights_sha256: str
    embed_dim: int
    untrained: bool
    preprocess: dict[str, Any]

    def embedder_config(self, *, device: str = "auto", precision: str = "auto",
                        checkpoint: str | None = None,
                        pretrained: str | None = None) -> EmbedderConfig:
        """The config that loads this model again (``checkpoint`` and ``pretrained`` override
        the recorded ones, e.g. the same weights at another path)."""
        return EmbedderConfig(model=self.name, pretrained=pretrained or self.pretrained,
                              checkpoint=checkpoint or self.checkpoint, device=device,
                              precision=precision)
