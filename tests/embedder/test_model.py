"""Model loading: the untrained tiny model, local checkpoints, and fast offline failure."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
import torch
from PIL import Image

from embedder import EmbedderConfig
from embedder.embedder import load_embedder
from embedder.weights import WeightsUnavailableError, probe_hub, resolve_model
from tests.imagegen import picture


def test_tiny_is_deterministic_and_untrained(tiny_embedder):
    again = load_embedder(EmbedderConfig(model="tiny", device="cpu"))
    assert again.identity.weights_sha256 == tiny_embedder.identity.weights_sha256
    assert tiny_embedder.identity.untrained
    images = [picture(i) for i in range(4)]
    np.testing.assert_array_equal(tiny_embedder.encode_pil(images), again.encode_pil(images))


def test_image_and_text_vectors_are_unit_float32(tiny_embedder):
    images = tiny_embedder.encode_pil([picture(i) for i in range(3)])
    texts = tiny_embedder.encode_texts(["a red bicycle", "a cat", ""])
    for vectors in (images, texts):
        assert vectors.dtype == np.float32 and vectors.shape == (3, tiny_embedder.dim)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(images[0], images[1])


def test_batch_and_single_encodings_agree(tiny_embedder):
    images = [picture(i) for i in range(5)]
    batch = tiny_embedder.encode_pil(images)
    single = np.concatenate([tiny_embedder.encode_pil([im]) for im in images])
    np.testing.assert_allclose(batch, single, atol=1e-5)


def test_local_checkpoint_loads_offline(tmp_path, tiny_embedder):
    state = {k: v.clone() for k, v in tiny_embedder.model.state_dict().items()}
    state["visual.proj"] += 0.5
    checkpoint = tmp_path / "tiny-tuned.pt"
    torch.save(state, checkpoint)
    tuned = load_embedder(EmbedderConfig(model="tiny", checkpoint=str(checkpoint), device="cpu"))
    assert not tuned.identity.untrained
    assert tuned.identity.weights_sha256 != tiny_embedder.identity.weights_sha256
    image = [Image.new("RGB", (64, 64), (200, 30, 30))]
    assert not np.allclose(tuned.encode_pil(image), tiny_embedder.encode_pil(image))


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="checkpoint file not found"):
        resolve_model(EmbedderConfig(checkpoint=str(tmp_path / "nope.pt")))


def test_unknown_tag_lists_known_ones():
    with pytest.raises(WeightsUnavailableError, match="laion2b_s34b_b79k"):
        resolve_model(EmbedderConfig(model="ViT-B-32", pretrained="no-such-tag"))


def test_offline_flag_fails_at_once_with_remedies(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as info:
        resolve_model(EmbedderConfig())
    assert time.monotonic() - start < 2
    message = str(info.value)
    for needle in ("ViT-B-32", "laion2b_s34b_b79k", "--checkpoint", "HF_HUB_OFFLINE", "tiny"):
        assert needle in message


def test_unreachable_hub_fails_within_ten_seconds(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="unreachable|did not answer"):
        resolve_model(EmbedderConfig(model="ViT-B-32", pretrained="laion2b_s34b_b79k"))
    assert time.monotonic() - start < 10


def test_probe_times_out_on_a_silent_host(monkeypatch):
    # A listener whose accept queue is full stops answering SYNs: the probe must give up.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        fillers = []
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        start = time.monotonic()
        reason = probe_hub(timeout=1.0)
        elapsed = time.monotonic() - start
        for s in fillers:
            s.close()
    assert elapsed < 3
    if reason is None:
        pytest.skip("this kernel accepted the connection despite the full backlog")
    assert "did not answer" in reason or "unreachable" in reason


@pytest.mark.gpu
def test_cuda_embeddings_match_cpu(tiny_embedder):
    cuda = load_embedder(EmbedderConfig(model="tiny", device="cuda"))
    assert cuda.device.type == "cuda" and cuda.precision == "fp16"
    images = [picture(i) for i in range(16)]
    on_gpu, on_cpu = cuda.encode_pil(images), tiny_embedder.encode_pil(images)
    assert on_gpu.dtype == np.float32
    assert (np.sum(on_gpu * on_cpu, axis=1) > 0.999).all()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_open_clip_dir(folder, tiny_embedder):
    """A model folder as open_clip saves one: open_clip_config.json and safetensors weights."""
    import json

    from safetensors.torch import save_file

    from embedder.models import MODEL_CONFIG_DIR

    folder.mkdir(parents=True)
    config = {"model_cfg": json.loads((MODEL_CONFIG_DIR / "tiny.json").read_text()),
              "preprocess_cfg": {}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    state = {k: v.contiguous() for k, v in tiny_embedder.model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))


def test_local_dir_model_loads_its_weights(tmp_path, tiny_embedder):
    _write_open_clip_dir(tmp_path / "tiny-dir", tiny_embedder)
    loaded = load_embedder(EmbedderConfig(model=f"local-dir:{tmp_path / 'tiny-dir'}",
                                          device="cpu"))
    assert loaded.identity.weights_sha256 == tiny_embedder.identity.weights_sha256
    assert not loaded.identity.untrained


@pytest.mark.slow
def test_hf_hub_model_loads_from_the_cache_offline(tmp_path, tiny_embedder):
    import subprocess
    import sys

    from tests.conftest import ROOT, cli_env

    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--tiny-clip" / "snapshots" / ("0" * 40)
    _write_open_clip_dir(snapshot, tiny_embedder)
    (cache / "models--acme--tiny-clip" / "refs").mkdir()
    (cache / "models--acme--tiny-clip" / "refs" / "main").write_text("0" * 40)
    env = {**cli_env(), "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    code = ("from embedder import EmbedderConfig; from embedder.embedder import load_embedder; "
            "print(load_embedder(EmbedderConfig(model='hf-hub:acme/tiny-clip', device='cpu'))"
            ".identity.weights_sha256)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == tiny_embedder.identity.weights_sha256


def test_cuda_without_a_gpu_is_a_user_error():
    from embedder.embedder import DeviceUnavailableError, resolve_device

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceUnavailableError, match="--device auto or cpu"):
        resolve_device("cuda")
