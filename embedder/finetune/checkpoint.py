"""What fine-tuning leaves on disk, all under ``NEW_IDX/finetune/``:

- ``state.pt``: the training state after the last finished epoch (weights, optimiser,
  step), replaced atomically, so a killed run resumes from it with ``--resume``;
- ``open_clip_model.safetensors`` and ``open_clip_config.json``: the fine-tuned model in
  open_clip's own layout (``local-dir:NEW_IDX/finetune`` loads it in open_clip too).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from embedder.finetune.config import FinetuneError, FinetuneSettings

FINETUNE_DIR = "finetune"
STATE_FILE = "state.pt"
WEIGHTS_FILE = "open_clip_model.safetensors"
CONFIG_FILE = "open_clip_config.json"


@dataclass
class TrainState:
    """Everything needed to continue a run exactly after ``epochs_done`` epochs."""

    epochs_done: int
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    settings: dict[str, Any]
    base_sha256: str
    losses: list[float]
    seconds: float


def save_state(path: Path, state: TrainState) -> None:
    """Write then rename: a kill during the write leaves the previous state whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state.__dict__, tmp)
    os.replace(tmp, path)


def load_state(path: Path, settings: FinetuneSettings, base_sha256: str) -> TrainState:
    """The saved state, refused when it belongs to another base model or other settings."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise FinetuneError(f"cannot read the training state {path}: {exc}") from exc
    state = TrainState(**raw)
    if state.base_sha256 != base_sha256:
        raise FinetuneError(f"{path} was trained from another base model (weights "
                            f"{state.base_sha256[:12]}); choose a new --out")
    if not settings.same_run(state.settings):
        changed = sorted(k for k, v in settings.to_json().items()
                         if k != "epochs" and state.settings.get(k) != v)
        raise FinetuneError(f"--resume with other settings than the interrupted run "
                            f"({', '.join(changed)} differ); use the same options or a new --out")
    return state


def open_clip_model_cfg(model_name: str) -> dict[str, Any]:
    """The architecture config of an open_clip name or a ``local-dir:`` model."""
    import open_clip

    if model_name.startswith("local-dir:"):
        config_path = Path(model_name[len("local-dir:"):]) / CONFIG_FILE
        return dict(json.loads(config_path.read_text())["model_cfg"])
    model_cfg = open_clip.get_model_config(model_name)
    if model_cfg is None:
        raise FinetuneError(f"open_clip has no config for {model_name}; cannot write "
                            f"{CONFIG_FILE}")
    return dict(model_cfg)


def write_model(folder: Path, model: torch.nn.Module, model_cfg: dict[str, Any],
                preprocess: dict[str, Any]) -> str:
    """The weights (safetensors) and an open_clip config; returns the file's sha256."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    tmp = folder / f".{WEIGHTS_FILE}.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, folder / WEIGHTS_FILE)
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return file_sha256(folder / WEIGHTS_FILE)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
