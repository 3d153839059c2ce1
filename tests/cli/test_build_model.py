"""Which model `visearch build` loads: the one named, else the index's own, else the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.build import build_embedder_config
from cli.main import build_parser
from embedder import DEFAULT_MODEL, DEFAULT_PRETRAINED, EmbedderConfig
from index.ann.search import Searcher
from index.build.pipeline import BuildConfig, run_build
from index.build.publish import IndexingOptions
from index.build.vector_import import import_vectors
from index.store.contract import NoModelError, precomputed_identity
from index.store.directory import IndexDirectory
from tests.conftest import run_visearch
from tests.synthetic import clustered, keys

TINY = EmbedderConfig(model="tiny", device="cpu")


def tiny_index(out: Path, images: list[Path], embedder) -> None:
    run_build(BuildConfig(inputs=tuple(map(str, images)), out=out, embedder=TINY, workers=0,
                          indexing=IndexingOptions(progress=False)), embedder=embedder)


def config_for(*argv: str) -> EmbedderConfig:
    return build_embedder_config(build_parser().parse_args(["build", *argv]))


def test_without_model_the_index_names_its_own(tmp_path, photos, tiny_embedder):
    out = tmp_path / "idx"
    assert config_for("x", "--out", str(out)).model == DEFAULT_MODEL  # no index yet
    assert not out.exists()  # asking did not create one
    tiny_index(out, photos[:3], tiny_embedder)
    chosen = config_for("x", "--out", str(out), "--device", "cpu", "--precision", "fp32")
    assert (chosen.model, chosen.device, chosen.precision) == ("tiny", "cpu", "fp32")
    chosen = config_for("x", "--out", str(out), "--checkpoint", "/w/tiny.pt")
    assert (chosen.model, chosen.checkpoint) == ("tiny", "/w/tiny.pt")
    named = config_for("x", "--out", str(out), "--model", DEFAULT_MODEL)  # named: kept
    assert (named.model, named.pretrained) == (DEFAULT_MODEL, DEFAULT_PRETRAINED)


def test_an_index_of_precomputed_vectors_names_no_model(tmp_path):
    directory = IndexDirectory(tmp_path / "idx")
    import_vectors(directory, clustered(50, 8), keys(50), precomputed_identity(8),
                   IndexingOptions(progress=False))
    with pytest.raises(NoModelError, match="adding images needs a model"):
        config_for("x", "--out", str(directory.path))


@pytest.mark.slow
def test_rebuild_without_model_uses_the_index_model_and_a_mismatch_stays_an_error(
        tmp_path, photos, tiny_embedder):
    import torch

    out = tmp_path / "idx"
    tiny_index(out, photos[:5], tiny_embedder)
    # Offline, the default ViT-B-32 has no weights: loading it would fail.
    result = run_visearch("build", *map(str, photos[5:8]), "--out", str(out), "--workers", "0",
                          "--quiet", check=True)
    assert "indexed 3 new" in result.stdout and "UNTRAINED" in result.stdout
    searcher = Searcher(out)
    assert searcher.ntotal == 8 and searcher.manifest.model.name == "tiny"
    other = {k: v + 0.01 for k, v in tiny_embedder.model.state_dict().items()}
    torch.save(other, tmp_path / "other.pt")
    result = run_visearch("build", str(photos[9]), "--out", str(out), "--workers", "0",
                          "--checkpoint", str(tmp_path / "other.pt"))
    assert result.returncode == 1 and "same --model" in result.stderr
    assert "Traceback" not in result.stderr and Searcher(out).ntotal == 8
