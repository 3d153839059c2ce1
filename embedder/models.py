"""Create open_clip models: the shipped ``tiny`` config and every architecture open_clip knows."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch

from embedder.config import EmbedderConfig
from embedder.weights import ResolvedModel, resolve_model

log = logging.getLogger("visearch.embedder")

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
TINY_SEED = 0
_registered = False


def register_model_configs() -> None:
    """Make the configs shipped in ``embedder/model_configs`` known to open_clip (once)."""
    global _registered
    if not _registered:
        open_clip.add_model_config(MODEL_CONFIG_DIR)
        _registered = True


@dataclass
class LoadedModel:
    """A CLIP model on the CPU in fp32, with what is needed to reproduce its embeddings."""

    model: torch.nn.Module
    tokenizer: Any
    preprocess_cfg: dict[str, Any]
    weights_sha256: str
    resolved: ResolvedModel


def load_model(cfg: EmbedderConfig) -> LoadedModel:
    """Load the model named by ``cfg`` on the CPU; raises WeightsUnavailableError fast."""
    register_model_configs()
    resolved = resolve_model(cfg)
    with torch.random.fork_rng(devices=[]):
        # Untrained weights must be identical in the build and in the server.
        torch.manual_seed(TINY_SEED)
        model = open_clip.create_model(
            resolved.model_name,
            pretrained=resolved.checkpoint,
            force_preprocess_cfg=resolved.preprocess or None,
        )
    model.eval()
    if resolved.untrained:
        log.warning("model %s has untrained random weights (seed %d): for tests and smoke runs "
                    "only, its search results mean nothing", cfg.model, TINY_SEED)
    preprocess_cfg = dict(open_clip.get_model_preprocess_cfg(model))
    tokenizer = open_clip.get_tokenizer(resolved.model_name)
    return LoadedModel(model, tokenizer, preprocess_cfg, state_dict_sha256(model), resolved)


def state_dict_sha256(model: torch.nn.Module) -> str:
    """Checksum of the weights, so an index is never served with a different model."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()
