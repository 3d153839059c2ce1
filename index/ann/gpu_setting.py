"""The --gpus setting as plain data (no faiss), so the command line parses it before
anything heavy loads; index.ann.gpu_serve acts on it."""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import VisearchError

MODES = ("off", "replicate", "shard")


class GpuSettingError(VisearchError, ValueError):
    """--gpus was given something it does not understand."""


@dataclass(frozen=True)
class GpuServing:
    mode: str = "off"  # off, replicate or shard
    count: int | None = None  # GPUs to use; None: all that faiss sees

    @property
    def wanted(self) -> bool:
        return self.mode != "off"

    def __str__(self) -> str:
        return self.mode if self.count is None else f"{self.mode}:{self.count}"


def parse_gpus(text: str) -> GpuServing:
    """``off``, ``replicate``, ``shard``, ``MODE:N`` or ``N`` (replicate on N GPUs)."""
    mode, _, count = text.strip().lower().partition(":")
    if mode.isdigit() and not count:
        mode, count = "replicate", mode
    if mode not in MODES or (count and not count.isdigit()) or count == "0":
        raise GpuSettingError(f"--gpus takes off, replicate, shard, MODE:N or N, not {text!r}")
    if mode == "off":
        return GpuServing()
    return GpuServing(mode, int(count) if count else None)
