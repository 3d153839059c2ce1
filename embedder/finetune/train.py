"""The training loop: contrastive loss on the image tower, AdamW with linear warm-up and
cosine decay, fp16 autocast on CUDA, and a saved state after every epoch to resume from."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from embedder.finetune.checkpoint import TrainState, load_state, save_state
from embedder.finetune.config import ALL_LAYERS, SUPERVISED, FinetuneError, FinetuneSettings
from embedder.finetune.data import ViewPairs, epoch_loader
from embedder.finetune.losses import nt_xent, supervised_contrastive

AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class TrainResult:
    """What the run did: per-epoch mean losses (resumed epochs included) and its speed."""

    epochs_done: int
    resumed_after: int
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0  # training time of all epochs, across resumes
    images: int = 0  # images (each two views) trained on in this process
    images_per_s: float = 0.0  # of this process


def select_trainable(model: torch.nn.Module, train_layers: int) -> list[torch.nn.Parameter]:
    """Freeze everything, then unfreeze the image tower's last ``train_layers`` blocks, its
    final norm and its projection (all of it for ALL_LAYERS). The text tower stays frozen:
    text queries are only as good as what the image tower keeps of the shared space."""
    for p in model.parameters():
        p.requires_grad_(False)
    visual: Any = model.visual
    if train_layers == ALL_LAYERS:
        parts = [visual]
    else:
        blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
        if blocks is None:
            raise FinetuneError("this image tower has no transformer blocks to pick from; "
                                "use --train-layers all")
        if not 1 <= train_layers <= len(blocks):
            raise FinetuneError(f"--train-layers must be 1..{len(blocks)} or all, not "
                                f"{train_layers}")
        parts = list(blocks[len(blocks) - train_layers:])
        parts += [m for m in (getattr(visual, "ln_post", None),) if m is not None]
    params = [p for part in parts for p in part.parameters()]
    if train_layers != ALL_LAYERS and isinstance(getattr(visual, "proj", None),
                                                 torch.nn.Parameter):
        params.append(visual.proj)
    for p in params:
        p.requires_grad_(True)
    return params


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train(model: torch.nn.Module, data: ViewPairs, settings: FinetuneSettings,
          state_path: Path, base_sha256: str, *, device: torch.device, precision: str = "fp32",
          workers: int = 0, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train ``model`` (on ``device``) in place for ``settings.epochs`` epochs, saving the
    state to ``state_path`` after each; with ``resume``, continue from that state.

    Raises:
        FinetuneError: a state exists without ``resume``, or belongs to another run.
    """
    torch.manual_seed(settings.seed)
    params = select_trainable(model, settings.train_layers)
    model.to(device)  # before the optimiser state is loaded: it follows its parameters
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    per_epoch = len(data) // settings.batch_size if len(data) > settings.batch_size else 1
    total = per_epoch * settings.epochs
    warmup = int(settings.warmup * total)
    result = TrainResult(epochs_done=0, resumed_after=0)
    step = 0
    if state_path.exists():
        if not resume:
            raise FinetuneError(f"{state_path.parent.parent} holds an interrupted fine-tune; "
                                f"pass --resume to continue it, or choose a new --out")
        state = load_state(state_path, settings, base_sha256)
        model.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
        step, result.epochs_done, result.resumed_after = state.step, state.epochs_done, \
            state.epochs_done
        result.losses, result.seconds = list(state.losses), state.seconds
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    supervised = settings.objective == SUPERVISED
    bar = tqdm(total=total, initial=step, unit="step", desc="finetune",
               disable=not progress or None)
    started = time.perf_counter()
    for epoch in range(result.epochs_done, settings.epochs):
        model.train()
        epoch_start, epoch_loss, batches = time.perf_counter(), 0.0, 0
        for view0, view1, labels in epoch_loader(data, epoch, settings.batch_size,
                                                  settings.seed, workers):
            for group in optimizer.param_groups:
                group["lr"] = settings.lr * lr_factor(step, total, warmup)
            pixels = torch.cat([view0, view1]).to(device, non_blocking=True)
            with _autocast(device, precision):
                features = model.encode_image(pixels)  # type: ignore[operator]
            z0, z1 = features.float().chunk(2)
            loss = (supervised_contrastive(z0, z1, labels.to(device), settings.temperature)
                    if supervised else nt_xent(z0, z1, settings.temperature))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            batches += 1
            value = float(loss.detach())
            epoch_loss += value
            result.images += len(view0)
            rate = result.images / (time.perf_counter() - started)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{value:.3f}", img_s=f"{rate:.1f}")
        model.eval()
        result.epochs_done = epoch + 1
        result.losses.append(epoch_loss / max(1, batches))
        result.seconds += time.perf_counter() - epoch_start
        save_state(state_path, TrainState(
            epochs_done=result.epochs_done, step=step,
            model={k: v.detach().cpu() for k, v in model.state_dict().items()},
            optimizer=optimizer.state_dict(), settings=settings.to_json(),
            base_sha256=base_sha256, losses=result.losses, seconds=result.seconds))
    bar.close()
    model.eval()
    elapsed = time.perf_counter() - started
    result.images_per_s = result.images / elapsed if result.images else 0.0
    return result


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AUTOCAST[precision])
