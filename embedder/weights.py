"""Find CLIP weights on disk, or download them, failing fast when the hub is out of reach.

open_clip on its own spends ~45 s in HTTP retries before it reports that the
hub cannot be reached; here the cache is checked first, the hub is probed with
a short timeout, and the error says how to supply weights offline.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from common.errors import VisearchError
from embedder.config import TINY_MODEL, EmbedderConfig

PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class WeightsUnavailableError(VisearchError):
    """The requested weights are neither cached nor downloadable right now."""


@dataclass(frozen=True)
class ResolvedModel:
    """What to hand to ``open_clip.create_model``.

    Attributes:
        model_name: the architecture name or a ``local-dir:`` path.
        checkpoint: weights file for ``pretrained=``, or None.
        preprocess: overrides from the weight tag (mean, std, interpolation, resize mode).
        untrained: True when the model gets random weights (the ``tiny`` model).
    """

    model_name: str
    checkpoint: str | None
    preprocess: dict[str, Any] = field(default_factory=dict)
    untrained: bool = False


def resolve_model(cfg: EmbedderConfig) -> ResolvedModel:
    """Turn a config into local files, downloading only when the hub answers quickly."""
    import open_clip

    if cfg.checkpoint:
        path = Path(cfg.checkpoint).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(f"checkpoint file not found: {path}")
        preprocess = _tag_preprocess(cfg.model, cfg.pretrained)
        return ResolvedModel(cfg.model, str(path.resolve()), preprocess)
    if cfg.model == TINY_MODEL:
        return ResolvedModel(cfg.model, None, untrained=True)
    if cfg.model.startswith("hf-hub:"):
        repo = cfg.model[len("hf-hub:"):]
        config_file = _first_hub_file(repo, ["open_clip_config.json"], cfg, cfg.model)
        _first_hub_file(repo, list(WEIGHT_FILES), cfg, cfg.model)
        return ResolvedModel(f"local-dir:{Path(config_file).parent}", None)
    if cfg.model.startswith("local-dir:"):
        return ResolvedModel(cfg.model, None)
    if not cfg.pretrained or cfg.pretrained.lower() == "none":
        return ResolvedModel(cfg.model, None, untrained=True)
    if os.path.isfile(cfg.pretrained):
        return ResolvedModel(cfg.model, os.path.abspath(cfg.pretrained))
    tag = open_clip.get_pretrained_cfg(cfg.model, cfg.pretrained)
    if not tag:
        known = ", ".join(open_clip.list_pretrained_tags_by_model(cfg.model)) or "none"
        raise WeightsUnavailableError(
            f"unknown weights '{cfg.pretrained}' for model '{cfg.model}' (known tags: {known})"
        )
    preprocess = {k: tag[k] for k in PREPROCESS_KEYS if k in tag}
    if tag.get("file"):
        return ResolvedModel(cfg.model, tag["file"], preprocess)
    # "org/repo/" names the default file; "org/repo/file.bin" a given one
    repo, filename = os.path.split(tag["hf_hub"])
    label = f"{cfg.model} / {cfg.pretrained}"
    return ResolvedModel(cfg.model, _first_hub_file(repo, _weight_names(filename), cfg, label),
                         preprocess)


def _tag_preprocess(model: str, pretrained: str | None) -> dict[str, Any]:
    import open_clip

    tag = open_clip.get_pretrained_cfg(model, pretrained) if pretrained else {}
    return {k: tag[k] for k in PREPROCESS_KEYS if k in tag}


def _weight_names(filename: str) -> list[str]:
    """Candidate files, safetensors first, as open_clip itself prefers them."""
    if not filename:
        return list(WEIGHT_FILES)
    stem, ext = os.path.splitext(filename)
    return [stem + ".safetensors", filename] if ext in (".bin", ".pth") else [filename]


def _first_hub_file(repo: str, names: list[str], cfg: EmbedderConfig, label: str) -> str:
    """The first of ``names`` in the local cache, else downloaded after a quick hub probe."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    for name in names:
        try:
            return str(hf_hub_download(repo, name, local_files_only=True))
        except LocalEntryNotFoundError:
            continue
    if _env_flag("HF_HUB_OFFLINE"):
        raise WeightsUnavailableError(_offline_message(label, "HF_HUB_OFFLINE is set"))
    reason = probe_hub(timeout=cfg.hub_timeout)
    if reason:
        raise WeightsUnavailableError(_offline_message(label, reason))
    for name in names:
        try:
            return str(hf_hub_download(repo, name))
        except EntryNotFoundError:
            continue
    raise WeightsUnavailableError(f"{label}: none of {names} in hub repo {repo}")


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def probe_hub(timeout: float) -> str | None:
    """None when a TCP connection to the hub opens within ``timeout`` s, else the reason.

    Name resolution has no timeout of its own, so the probe runs in a daemon thread.
    """
    url = urlparse(hub_endpoint())
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{host}:{port} unreachable ({exc})")

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"{host}:{port} did not answer within {timeout:g} s"


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _offline_message(label: str, reason: str) -> str:
    return (
        f"cannot load weights for {label}: they are not in the Hugging Face cache "
        f"and the hub cannot be used ({reason}). To run offline, either pass "
        f"--checkpoint FILE (an open_clip .safetensors/.bin/.pt file), or fill the cache on a "
        f"machine with internet access and copy it here (HF_HOME or HF_HUB_CACHE, "
        f"default ~/.cache/huggingface), optionally with HF_HUB_OFFLINE=1. "
        f"For a smoke test without weights use --model tiny (untrained)."
    )
