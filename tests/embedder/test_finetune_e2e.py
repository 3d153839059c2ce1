"""`visearch finetune` end to end with the untrained tiny model on ~200 generated images in
groups (the demo's sample corpus): the new index is valid, servable, records its lineage and
scores higher on held-out queries; a SIGKILLed run resumes from its last epoch; text
queries are refused or accepted as the manifest says."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
import torch

from embedder import EmbedderConfig
from embedder.finetune.config import SUPERVISED, FinetuneError, FinetuneSettings
from embedder.finetune.run import FinetuneJob, finetune_index
from evaluation.quality import read_labels
from index.build.pipeline import BuildConfig, run_build
from index.build.publish import IndexingOptions
from index.check import check_directory
from index.store.directory import IndexDirectory
from server.app import SearchServer
from server.client import SearchClient
from server.config import ServerConfig
from tests.conftest import ROOT, cli_env

pytestmark = pytest.mark.slow
GROUPS = 30  # 180 indexed images, 6 per group


@pytest.fixture(scope="module")
def sample(tmp_path_factory, tiny_embedder):
    """The sample corpus and IDX, built with the untrained tiny model."""
    spec = importlib.util.spec_from_file_location("make_sample_corpus",
                                                  ROOT / "scripts" / "make_sample_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = tmp_path_factory.mktemp("sample")
    module.write_corpus(root / "data", GROUPS)
    run_build(BuildConfig(inputs=(str(root / "data" / "corpus"),), out=root / "idx",
                          embedder=EmbedderConfig(model="tiny", device="cpu"), workers=0,
                          indexing=IndexingOptions(progress=False)), embedder=tiny_embedder)
    return root


def _serve(index_dir: Path) -> SearchServer:
    server = SearchServer(ServerConfig(index_dir=index_dir, port=0, device="cpu",
                                       drain_seconds=0.0, follow_seconds=0))
    server.start()
    server.load()
    return server


def test_supervised_finetune_makes_a_better_servable_index(sample, tmp_path):
    labels = read_labels(sample / "data" / "labels.csv")
    settings = FinetuneSettings(objective=SUPERVISED, epochs=4, batch_size=32, lr=1e-3,
                                train_layers=-1)
    out = tmp_path / "new"
    report = finetune_index(FinetuneJob(index=sample / "idx", out=out, settings=settings,
                                        labels=labels, device="cpu", text_queries="refuse",
                                        progress=False))
    rows = report.evaluation.rows
    before, after = rows["IDX (base)"], rows["NEW_IDX (fine-tuned)"]
    assert report.evaluation.to_json()["heldout_images"] == 2 * GROUPS
    assert report.trained_images == 4 * GROUPS
    assert after["map@10"] > before["map@10"], rows
    assert set(rows) == {"IDX (base)", "linear probe on IDX", "NEW_IDX (fine-tuned)"}

    directory = IndexDirectory(out)
    assert all(f.ok for f in check_directory(directory))
    model = directory.manifest().model
    base = IndexDirectory(sample / "idx").manifest().model
    assert model.finetune["base"]["weights_sha256"] == base.weights_sha256
    assert model.finetune["settings"] == settings.to_json()
    assert model.finetune["text_queries"] is False
    assert model.checkpoint == "finetune/open_clip_model.safetensors"
    assert model.weights_sha256 != base.weights_sha256
    from embedder.finetune.checkpoint import file_sha256

    assert model.finetune["weights_file_sha256"] == file_sha256(out / model.checkpoint)

    server = _serve(out)
    try:
        with SearchClient(f"127.0.0.1:{server.port}", timeout=30) as client:
            query = sorted((sample / "data" / "queries").iterdir())[0]
            hits = client.search_image(query, k=5).hits
            assert len(hits) == 5
            with pytest.raises(grpc.RpcError) as refused:
                client.search_text("a photo of a group000")
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "alignment with the text tower was not kept" in refused.value.details()
    finally:
        server.stop(grace=1)


def _state_epochs(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["epochs_done"])


def test_resume_after_sigkill_continues_from_the_last_epoch(sample, tmp_path):
    out, epochs = tmp_path / "new", 2
    args = [sys.executable, "-m", "cli.main", "finetune", str(sample / "idx"), "--out",
            str(out), "--epochs", str(epochs), "--batch-size", "16", "--workers", "0",
            "--device", "cpu", "--text-queries", "accept", "--labels",
            str(sample / "data" / "labels.csv"), "--objective", "self-supervised"]
    state = out / "finetune" / "state.pt"
    process = subprocess.Popen(args, cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while not state.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)  # in epoch 2: epoch 1 has just been saved
    finally:
        process.kill()
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    done = _state_epochs(state)
    assert 1 <= done < epochs
    assert not (out / "CURRENT").exists()

    with pytest.raises(FinetuneError, match="pass --resume"):  # refused before any work
        finetune_index(FinetuneJob(index=sample / "idx", out=out, device="cpu", progress=False))

    resumed = subprocess.run([*args, "--resume"], cwd=ROOT, env=cli_env(), capture_output=True,
                             text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed after epoch {done}" in resumed.stdout
    assert _state_epochs(state) == epochs
    assert "text queries accepted" in resumed.stdout

    server = _serve(out)
    try:
        with SearchClient(f"127.0.0.1:{server.port}", timeout=30) as client:
            assert len(client.search_text("a photo of a group001", k=3).hits) == 3
    finally:
        server.stop(grace=1)
