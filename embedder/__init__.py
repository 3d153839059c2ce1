"""CLIP embedder: model loading, safe image decoding and batched encoding.

Only light names are exported here; the model code (torch, open_clip) is in
``embedder.embedder`` and imported where it is used, so clients start fast.
"""

from embedder.config import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    TINY_MODEL,
    DecodeLimits,
    EmbedderConfig,
    ModelIdentity,
)

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PRETRAINED",
    "TINY_MODEL",
    "DecodeLimits",
    "EmbedderConfig",
    "ModelIdentity",
]
