"""What a running server holds: the model side, loaded once, and the index handle, which a
new version replaces while requests run.

Each request takes ``IndexHandle.current`` once at its start and uses that
version to the end, so it is answered wholly by one version however often the
handle is swapped meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np

from embedder.config import DecodeLimits
from embedder.embedder import Embedder
from embedder.inputs import ModelInput
from index.ann.search import Searcher
from index.store.manifest import utc_now
from server.batcher import MicroBatcher

# A micro-batch item: ("image", model input tensor) or ("text", str).
ModelItem = tuple[str, object]


class ModelSide:
    """The embedder and the micro-batcher that shares its forward passes between requests."""

    def __init__(self, embedder: Embedder, limits: DecodeLimits, *, batch_max: int,
                 batch_wait_ms: float):
        self.embedder = embedder
        self.to_input: ModelInput = embedder.model_input(limits)
        self.batcher: MicroBatcher[ModelItem, np.ndarray] = MicroBatcher(
            self._embed_batch, max_batch=batch_max, max_wait=batch_wait_ms / 1000,
            name="embedder")

    @property
    def device(self) -> str:
        return str(self.embedder.device)

    def submit(self, item: ModelItem) -> Future[np.ndarray]:
        return self.batcher.submit(item)

    def _embed_batch(self, items: Sequence[ModelItem]) -> list[np.ndarray]:
        import torch

        out: list[np.ndarray] = [np.empty(0)] * len(items)
        images = [i for i, (kind, _) in enumerate(items) if kind == "image"]
        texts = [i for i, (kind, _) in enumerate(items) if kind == "text"]
        if images:
            pixels = torch.stack([items[i][1] for i in images])  # type: ignore[misc]
            for i, v in zip(images, self.embedder.encode_images(pixels), strict=True):
                out[i] = v
        if texts:
            vectors = self.embedder.encode_texts([str(items[i][1]) for i in texts])
            for i, v in zip(texts, vectors, strict=True):
                out[i] = v
        return out

    def close(self) -> None:
        self.batcher.close(timeout=30)


class ServedVersion:
    """When the served version was swapped in, and a newer version that was refused and
    why: the bookkeeping of one IndexHandle and of each shard of a multi-index server
    (server.multi.ShardSlot), which VersionFollower drives through ``swap``/``refuse``."""

    def __init__(self) -> None:
        self.loaded_at = utc_now()
        self.refused_version: int | None = None
        self.refused_reason = ""

    def swapped_in(self, version: int) -> None:
        """``version`` is served from now on; a refusal it supersedes is forgotten."""
        self.loaded_at = utc_now()
        if (self.refused_version or 0) <= version:
            self.refused_version, self.refused_reason = None, ""

    def refuse(self, version: int, reason: str) -> None:
        """Remember that ``version`` exists but was not loaded, and why."""
        self.refused_version, self.refused_reason = version, reason


class IndexHandle(ServedVersion):
    """The served index version, replaced by one reference assignment.

    Also what Info tells about it: when it was loaded, a newer version that was
    refused and why, and advice about the index (e.g. that it has outgrown its training).
    """

    def __init__(self, searcher: Searcher):
        super().__init__()
        self._current = searcher
        self._lock = threading.Lock()  # orders swaps; readers never take it
        self.advice = ""
        self.writable = False

    @property
    def current(self) -> Searcher:
        return self._current

    def swap(self, searcher: Searcher) -> Searcher:
        """Serve ``searcher`` from the next request on; returns the one it replaces, which
        requests already running keep using (close it once they are done)."""
        with self._lock:
            previous, self._current = self._current, searcher
            self.swapped_in(searcher.manifest.version)
        return previous

    def info_fields(self) -> dict[str, object]:
        """The InfoResponse fields about the served version beyond its manifest."""
        return {"loaded_at": self.loaded_at, "refused_version": self.refused_version or 0,
                "refused_reason": self.refused_reason, "writable": self.writable,
                "index_advice": self.advice}
