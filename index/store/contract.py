"""The model contract: which model's vectors an index holds, and whether a model may extend,
serve or query it. The build, the server and evaluation ask here and nowhere else.

The first build records its model's identity in the catalog; every published
manifest carries it. Vectors from two models never share an index.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from common.errors import VisearchError
from embedder.config import ModelIdentity
from index.store.catalog import Catalog
from index.store.directory import IndexDirectory

PRECOMPUTED = "precomputed"
MODEL_META_KEY = "model"


class ModelMismatchError(VisearchError):
    """The directory holds vectors from another model; mixing them would corrupt the index."""


class NoModelError(VisearchError):
    """The index holds precomputed vectors only: it answers embedding queries alone."""


class TextQueriesRefusedError(NoModelError):
    """The image tower was fine-tuned without keeping its alignment with the text tower."""


def require_text(identity: ModelIdentity) -> None:
    """Raise TextQueriesRefusedError when the index's model no longer matches texts to
    images (see ``visearch finetune``: only the image tower is trained)."""
    if not identity.accepts_text:
        measured = (identity.finetune or {}).get("text_alignment")
        why = (f"text-to-image mAP@10 went from {measured['before']:.3f} to "
               f"{measured['after']:.3f}" if measured else "the alignment was not measured "
               "(no labels to caption)")
        raise TextQueriesRefusedError(
            f"this index was built with a fine-tuned image tower whose alignment with the "
            f"text tower was not kept ({why}); send an image, an embedding or like_id, or "
            f"query the base index for text")


def precomputed_identity(dim: int) -> ModelIdentity:
    """The identity recorded for vectors that no model of ours produced."""
    return ModelIdentity(name=PRECOMPUTED, pretrained=None, checkpoint=None,
                         weights_sha256=PRECOMPUTED, embed_dim=dim, untrained=True,
                         preprocess={})


def has_model(identity: ModelIdentity) -> bool:
    """False for precomputed vectors: no model can embed queries into their space."""
    return identity.weights_sha256 != PRECOMPUTED


def require_model(identity: ModelIdentity, purpose: str) -> None:
    """Raise NoModelError when ``purpose`` needs a model and the index has none."""
    if not has_model(identity):
        raise NoModelError(f"{purpose} needs a model, and this index holds precomputed "
                           f"vectors only")


def check_same_model(recorded: ModelIdentity, loaded: ModelIdentity) -> None:
    """A loaded model may serve or extend an index only with the weights and preprocessing
    that built it.

    Raises:
        ModelMismatchError: naming both models and what to do about it.
    """
    if loaded.weights_sha256 != recorded.weights_sha256:
        raise ModelMismatchError(
            f"this index holds vectors from model {recorded.name} "
            f"({recorded.pretrained or 'custom'}, weights {recorded.weights_sha256[:12]}); the "
            f"loaded model is {loaded.name} ({loaded.pretrained or 'custom'}, weights "
            f"{loaded.weights_sha256[:12]}). Use the same --model/--pretrained/--checkpoint as "
            f"the build that made it, or build a new index")
    if loaded.preprocess != recorded.preprocess:
        raise ModelMismatchError(f"preprocessing differs from the build's: {loaded.preprocess} "
                                 f"!= {recorded.preprocess}")


def stored_identity(catalog: Catalog) -> ModelIdentity | None:
    """The identity of the vectors already stored, or None for an empty directory."""
    raw = catalog.get_meta(MODEL_META_KEY)
    return None if raw is None else ModelIdentity(**json.loads(raw))


def identity_in(directory: IndexDirectory) -> ModelIdentity | None:
    """The model of the index in ``directory``, or None when it holds none yet. Reads only:
    a mistyped path is not turned into an empty index."""
    if not directory.catalog_path.is_file():
        return None
    catalog = directory.catalog(readonly=True)
    try:
        return stored_identity(catalog)
    finally:
        catalog.close()


def record_or_check(catalog: Catalog, identity: ModelIdentity) -> ModelIdentity:
    """The first build records its model; later ones must use the same weights."""
    stored = stored_identity(catalog)
    if stored is None:
        catalog.set_meta(MODEL_META_KEY, json.dumps(asdict(identity), sort_keys=True))
        return identity
    check_same_model(stored, identity)
    return stored
