"""A real fine-tuned index (the untrained tiny model, one short epoch on a small generated
corpus) checks its own weights: `visearch check` passes on it, and names a modified or
missing weights file with the mending command."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from embedder import EmbedderConfig
from embedder.finetune.config import FinetuneSettings
from embedder.finetune.run import FinetuneJob, finetune_index
from index.build.pipeline import BuildConfig, run_build
from index.build.publish import IndexingOptions
from index.check import check_directory
from index.store.directory import IndexDirectory
from tests.conftest import ROOT, run_visearch

pytestmark = pytest.mark.slow
GROUPS = 6  # 36 indexed images


def write_sample(root):
    spec = importlib.util.spec_from_file_location("make_sample_corpus",
                                                  ROOT / "scripts" / "make_sample_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_corpus(root / "data", GROUPS)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, tiny_embedder):
    """IDX (untrained tiny) and a self-supervised one-epoch fine-tune of it."""
    root = tmp_path_factory.mktemp("lineage")
    write_sample(root)
    run_build(BuildConfig(inputs=(str(root / "data" / "corpus"),), out=root / "idx",
                          embedder=EmbedderConfig(model="tiny", device="cpu"), workers=0,
                          indexing=IndexingOptions(progress=False)), embedder=tiny_embedder)
    finetune_index(FinetuneJob(index=root / "idx", out=root / "tuned", device="cpu",
                               settings=FinetuneSettings(epochs=1, batch_size=12),
                               progress=False))
    return root / "tuned"


@pytest.mark.parametrize("damage", ["modified", "missing"])
def test_check_verifies_the_fine_tuned_weights(tuned, tmp_path, damage):
    findings = check_directory(IndexDirectory(tuned))
    weights = [f for f in findings if f.part == "weights"]
    assert len(weights) == 1 and weights[0].ok, findings
    assert all(f.ok for f in findings)

    copy = tmp_path / "tuned"
    shutil.copytree(tuned, copy)
    target = copy / "finetune" / "open_clip_model.safetensors"
    if damage == "modified":
        data = bytearray(target.read_bytes())
        data[-1] ^= 0xFF  # one bit pattern in the last tensor: same size, other weights
        target.write_bytes(bytes(data))
    else:
        target.unlink()
    result = run_visearch("check", str(copy))
    assert result.returncode == 1, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if " weights " in x)
    assert line.startswith("FAIL")
    said = "were modified" if damage == "modified" else "are missing"
    assert f"finetune/open_clip_model.safetensors {said}" in line
    assert "visearch finetune" in line and "--out NEW_DIR" in line
    assert "Traceback" not in result.stderr
