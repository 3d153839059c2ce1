"""The build's middle: decode -> decide (plan.decide) -> embed -> write, batch by batch.

It drives the injected stages (stages.py) and collects what happened to each
file; a file's failure is recorded with its reason and never stops the build.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from index.build.plan import Plan, decide
from index.build.stages import BatchEmbedder, BatchWriter

if TYPE_CHECKING:
    import torch


@dataclass
class IngestStats:
    embedded: int = 0  # ran through the model
    reused: int = 0  # same bytes already stored under another path: vector copied
    unchanged: int = 0  # listed again, same path and bytes: nothing to do
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def stored(self) -> int:
        return self.embedded + self.reused


def ingest(planned: Plan, embedder: BatchEmbedder, writer: BatchWriter, *,
           progress: bool = True) -> IngestStats:
    """Decode, embed and store every file of ``planned.todo``; failures are collected."""
    stats = IngestStats()
    start = time.perf_counter()
    with tqdm(total=len(planned.todo), unit="img", desc="embed", disable=not progress or None,
              smoothing=0.1) as bar:
        for batch in embedder.decoded(planned.todo):
            stats.failed.extend((f.file.path, f.error or "") for f in batch.failed)
            records = [replace(f.file, sha256=f.sha256 or "") for f in batch.ok]
            decisions = decide(records, planned.present, writer.stored_vector)
            writer.keep(decisions.keep)
            vectors = embedder.encode(_rows(batch.pixels, decisions.embed)) \
                if decisions.embed else np.zeros((0, 0), dtype=np.float32)
            by_row = dict(zip(decisions.embed, vectors, strict=True))
            writer.write([(record, by_row[source] if isinstance(source, int) else source)
                          for record, source in decisions.store])
            stats.embedded += len(decisions.embed)
            stats.reused += decisions.reused
            stats.unchanged += len(decisions.keep)
            bar.update(len(batch.files))
    writer.flush()
    stats.seconds = time.perf_counter() - start
    return stats


def _rows(pixels: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """The batch's rows to embed; all of them (the usual case) without a copy."""
    return pixels if rows == list(range(len(pixels))) else pixels[rows]
