"""Query vectors from a folder of images, embedded with the model that built the index."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.errors import VisearchError
from embedder.config import ModelIdentity
from index.build.sources import list_images
from index.store.contract import require_model


class NoQueryImagesError(VisearchError, ValueError):
    """The query folder holds no image the model could read."""


def embed_folder(folder: Path, identity: ModelIdentity, index_dir: Path | None = None
                 ) -> np.ndarray:
    """Unit vectors of the decodable images under ``folder`` (others are skipped)."""
    from embedder.embedder import load_embedder

    require_model(identity, "--queries")
    embedder = load_embedder(identity.embedder_config(base_dir=index_dir))
    vectors = [v for _, v in embedder.embed_files(list_images([str(folder)]).files) if len(v)]
    if not vectors:
        raise NoQueryImagesError(f"no decodable images in {folder}")
    return np.concatenate(vectors)
