"""The embedder: one CLIP model and its preprocessing, used by both the build and the server."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image

from common.errors import VisearchError
from embedder.config import DecodeLimits, EmbedderConfig, ModelIdentity
from embedder.files import DecodedBatch, FileRef, decoded_batches
from embedder.inputs import ModelInput
from embedder.models import LoadedModel, load_model
from embedder.pixels import PixelPlan

log = logging.getLogger("visearch.embedder")

AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


class DeviceUnavailableError(VisearchError):
    """The asked-for device is not present on this machine."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when a device is visible, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(f"--device {name} was asked for but CUDA is not "
                                     f"available here; use --device auto or cpu")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """fp16 autocast on CUDA and fp32 on the CPU unless told otherwise."""
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision not in ("fp32", *AUTOCAST_DTYPES):
        raise ValueError(f"unknown precision {precision!r}: use auto, fp32, fp16 or bf16")
    return precision


class Embedder:
    """Encodes preprocessed image tensors and texts into L2-normalised float32 vectors."""

    def __init__(self, loaded: LoadedModel, cfg: EmbedderConfig):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.model = loaded.model.to(self.device)
        self.tokenizer = loaded.tokenizer
        self.preprocess_cfg = loaded.preprocess_cfg
        self.transform = image_transform_v2(PreprocessCfg(**loaded.preprocess_cfg), is_train=False)
        # The same preprocessing as uint8 pixels + one normalisation per batch, where covered.
        self.pixel_plan = PixelPlan.for_model(loaded.preprocess_cfg)
        self.identity = ModelIdentity(
            name=cfg.model,
            pretrained=None if loaded.resolved.untrained or cfg.checkpoint else cfg.pretrained,
            checkpoint=loaded.resolved.checkpoint if cfg.checkpoint else None,
            weights_sha256=loaded.weights_sha256,
            embed_dim=int(loaded.model.visual.output_dim),  # type: ignore[union-attr,arg-type]
            untrained=loaded.resolved.untrained,
            preprocess=_jsonable(loaded.preprocess_cfg),
        )

    @property
    def dim(self) -> int:
        return self.identity.embed_dim

    @property
    def image_size(self) -> int:
        size = self.preprocess_cfg["size"]
        return int(max(size) if isinstance(size, (tuple, list)) else size)

    @property
    def pin_memory(self) -> bool:
        return self.device.type == "cuda"

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """An RGB image to the model's input tensor (resize, crop, normalise)."""
        return self.transform(image)

    def model_input(self, limits: DecodeLimits = DecodeLimits()) -> ModelInput:
        """Encoded image bytes (+ crop box) to this model's input tensor."""
        return ModelInput(self.transform, limits, draft_size=self.image_size,
                          plan=self.pixel_plan)

    def embed_files(self, files: Sequence[FileRef], *, batch_size: int = 64, workers: int = 0,
                    limits: DecodeLimits = DecodeLimits()
                    ) -> Iterator[tuple[DecodedBatch, np.ndarray]]:
        """Each batch of files with the unit vectors of its decodable ones (in order)."""
        for batch in decoded_batches(files, self.model_input(limits), batch_size=batch_size,
                                     workers=workers, pin_memory=self.pin_memory):
            yield batch, self.encode_images(batch.pixels)

    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        """A batch of preprocessed images (N, 3, H, W) to (N, dim) unit vectors: float model
        inputs, or uint8 pixels from ``model_input().pixels`` (normalised here, on the
        model's device, as one op)."""
        if len(pixels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        with torch.inference_mode(), self.autocast():
            pixels = pixels.to(self.device, non_blocking=True)
            if pixels.dtype == torch.uint8:
                if self.pixel_plan is None:
                    raise ValueError("uint8 pixels need a model whose preprocessing has a "
                                     "PixelPlan; pass float model inputs")
                pixels = self.pixel_plan.normalise(pixels)
            features = self.model.encode_image(pixels)  # type: ignore[operator]
            return _normalise(features)

    def encode_pil(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_images(torch.stack([self.preprocess(im) for im in images]))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts to (N, dim) unit vectors in the same space as the images."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = self.tokenizer(list(texts))
        with torch.inference_mode(), self.autocast():
            return _normalise(self.model.encode_text(tokens.to(self.device)))  # type: ignore[operator]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """fp16/bf16 autocast on CUDA when asked for; nothing in fp32."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[self.precision])


def load_embedder(cfg: EmbedderConfig) -> Embedder:
    """Load the model (fast failure when weights are missing) and place it on its device."""
    embedder = Embedder(load_model(cfg), cfg)
    log.info("embedder: %s on %s (%s), dim %d%s", cfg.model, embedder.device, embedder.precision,
             embedder.dim, ", UNTRAINED" if embedder.identity.untrained else "")
    return embedder


def _normalise(features: torch.Tensor) -> np.ndarray:
    # Normalise in fp32: fp16 features normalised in fp16 are off by ~1e-3.
    return F.normalize(features.float(), dim=-1).cpu().numpy().astype(np.float32, copy=False)


def _jsonable(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}
