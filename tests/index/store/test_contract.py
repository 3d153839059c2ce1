"""The model contract: one record per index, one check, and the precomputed case."""

from __future__ import annotations

from dataclasses import replace

import pytest

from embedder.config import EmbedderConfig, ModelIdentity
from index.store.catalog import Catalog
from index.store.contract import (
    ModelMismatchError,
    NoModelError,
    check_same_model,
    has_model,
    precomputed_identity,
    record_or_check,
    require_model,
    stored_identity,
)

TINY = ModelIdentity(name="tiny", pretrained=None, checkpoint=None, weights_sha256="a" * 64,
                     embed_dim=64, untrained=True, preprocess={"size": [64, 64]})


def test_the_first_build_records_and_later_ones_must_match(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite")
    assert stored_identity(catalog) is None
    assert record_or_check(catalog, TINY) == TINY
    assert stored_identity(Catalog(tmp_path / "catalog.sqlite")) == TINY
    assert record_or_check(catalog, TINY) == TINY
    other = replace(TINY, name="other", weights_sha256="b" * 64)
    with pytest.raises(ModelMismatchError, match="same --model"):
        record_or_check(catalog, other)
    assert stored_identity(catalog) == TINY


def test_same_weights_with_other_preprocessing_is_a_mismatch():
    check_same_model(TINY, TINY)
    with pytest.raises(ModelMismatchError, match="preprocessing"):
        check_same_model(TINY, replace(TINY, preprocess={"size": [224, 224]}))


def test_precomputed_vectors_have_no_model():
    identity = precomputed_identity(32)
    assert identity.embed_dim == 32 and not has_model(identity) and has_model(TINY)
    require_model(TINY, "a text query")
    with pytest.raises(NoModelError, match="a text query needs a model"):
        require_model(identity, "a text query")


def test_an_identity_reloads_as_the_config_that_built_it():
    identity = replace(TINY, name="ViT-B-32", pretrained="laion2b_s34b_b79k")
    assert identity.embedder_config() == EmbedderConfig(model="ViT-B-32",
                                                        pretrained="laion2b_s34b_b79k")
    moved = identity.embedder_config(device="cpu", checkpoint="/models/w.safetensors")
    assert moved.checkpoint == "/models/w.safetensors" and moved.device == "cpu"
