"""The search service: query -> embedding -> nearest neighbours -> hits with paths.

No protobuf here; servicer.py translates. Image and text queries share one
micro-batched model; vector searches run in the request threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from embedder import DecodeLimits, EmbedderConfig
from embedder.decode import decode_image
from embedder.embedder import Embedder, load_embedder
from embedder.errors import VisearchError
from index.build import ModelMismatchError
from index.search import MAX_K, InvalidQueryError, Searcher, SearchParams
from index.vector_import import precomputed_identity
from server.batcher import MicroBatcher

DEFAULT_K = 10


class NoModelError(VisearchError):
    """The index holds precomputed vectors only: it answers embedding queries alone."""


class DeadlineExceededError(VisearchError):
    """The caller's deadline passed before the answer was ready."""


class CancelledByClientError(VisearchError):
    """The caller went away; its queries are dropped before they reach the model."""


# How often a waiting request looks at its deadline and its cancellation flag.
POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Query:
    """Exactly one of image, text or vector, plus per-call search parameters."""

    params: SearchParams
    image: bytes | None = None
    crop: tuple[int, int, int, int] | None = None
    text: str | None = None
    vector: np.ndarray | None = None

    def __post_init__(self) -> None:
        given = sum(x is not None for x in (self.image, self.text, self.vector))
        if given != 1:
            raise InvalidQueryError(f"a query needs exactly one of image, text or embedding; "
                                    f"got {given}")
        if self.crop is not None and self.image is None:
            raise InvalidQueryError("a crop box applies to image queries only")


@dataclass
class Timings:
    decode_ms: float = 0.0
    embed_ms: float = 0.0
    search_ms: float = 0.0
    total_ms: float = 0.0


@dataclass
class Result:
    hits: list[tuple[int, str, float]]  # (id, path, score), best first
    index_version: int
    timings: Timings = field(default_factory=Timings)


@dataclass(frozen=True)
class ServiceConfig:
    limits: DecodeLimits = DecodeLimits()
    max_k: int = MAX_K
    batch_max: int = 32
    batch_wait_ms: float = 2.0


class SearchService:
    """One index version and the model that built it; safe to call from many threads."""

    def __init__(self, searcher: Searcher, embedder: Embedder | None,
                 config: ServiceConfig = ServiceConfig()):
        self.searcher = searcher
        self.embedder = embedder
        self.config = config
        self.batcher: MicroBatcher[tuple[str, object], np.ndarray] | None = None
        if embedder is not None:
            self.batcher = MicroBatcher(self._embed_batch, max_batch=config.batch_max,
                                        max_wait=config.batch_wait_ms / 1000, name="embedder")

    # --- single queries ---------------------------------------------------

    def search(self, query: Query, timeout: float | None = None,
               cancelled: threading.Event | None = None) -> Result:
        """One query's result; its error is raised."""
        outcome = self.search_many([query], timeout, cancelled)[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def search_many(self, queries: Sequence[Query], timeout: float | None = None,
                    cancelled: threading.Event | None = None) -> list[Result | Exception]:
        """Each query's result or its error, in order; one faiss call per parameter set.

        ``timeout`` (seconds) and ``cancelled`` stop the wait for the model and withdraw
        queries not yet embedded.
        """
        start = time.perf_counter()
        deadline = None if timeout is None else time.monotonic() + timeout
        timings = [Timings() for _ in queries]
        vectors = self._embed_all(queries, timings, deadline, cancelled)
        results: list[Result | Exception] = [
            v if isinstance(v, Exception) else InvalidQueryError("not searched") for v in vectors]
        groups: dict[SearchParams, list[int]] = {}
        for i, query in enumerate(queries):
            if not isinstance(vectors[i], Exception):
                groups.setdefault(query.params, []).append(i)
        for params, members in groups.items():
            batch = np.concatenate([vectors[i] for i in members])  # type: ignore[misc]
            for i, outcome in zip(members, self._search_group(params, batch), strict=True):
                results[i] = outcome
        total = (time.perf_counter() - start) * 1000
        for outcome, t in zip(results, timings, strict=True):
            t.total_ms = total
            if isinstance(outcome, Result):
                outcome.timings = replace(t, search_ms=outcome.timings.search_ms)
        return results

    def _embed_all(self, queries: Sequence[Query], timings: list[Timings],
                   deadline: float | None, cancelled: threading.Event | None
                   ) -> list[np.ndarray | Exception]:
        out: list[np.ndarray | Exception] = []
        pending = []
        for i, query in enumerate(queries):
            try:
                if query.vector is not None:
                    out.append(self.searcher.prepare(query.vector))
                    continue
                item = self._model_input(query, timings[i])
                assert self.batcher is not None
                pending.append((i, time.perf_counter(), self.batcher.submit(item)))
                out.append(np.empty(0))
            except Exception as exc:  # noqa: BLE001 - per-query errors travel in the result
                out.append(exc)
        for i, submitted, future in pending:
            try:
                out[i] = _await(future, deadline, cancelled)[None, :]
            except Exception as exc:  # noqa: BLE001
                out[i] = exc
            timings[i].embed_ms = (time.perf_counter() - submitted) * 1000
        return out

    def _model_input(self, query: Query, timing: Timings) -> tuple[str, object]:
        if self.embedder is None:
            raise NoModelError("this index holds precomputed vectors and has no model: "
                               "send embedding queries")
        if query.text is not None:
            if not query.text.strip():
                raise InvalidQueryError("text query is empty")
            return ("text", query.text)
        start = time.perf_counter()
        draft = None if query.crop else self.embedder.image_size
        image = decode_image(query.image or b"", self.config.limits, crop=query.crop,
                             draft_size=draft)
        pixels = self.embedder.preprocess(image)
        timing.decode_ms = (time.perf_counter() - start) * 1000
        return ("image", pixels)

    def _embed_batch(self, items: Sequence[tuple[str, object]]) -> list[np.ndarray]:
        assert self.embedder is not None
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

    def _search_group(self, params: SearchParams, vectors: np.ndarray
                      ) -> list[Result | Exception]:
        """One faiss call for queries sharing parameters; an error applies to all of them."""
        start = time.perf_counter()
        try:
            if params.k > self.config.max_k:
                raise InvalidQueryError(f"k must be between 1 and {self.config.max_k}, "
                                        f"not {params.k}")
            hits = self.searcher.search(vectors, params)
            paths = self.searcher.paths(hits.ids)
        except Exception as exc:  # noqa: BLE001 - per-query errors travel in the result
            return [exc] * len(vectors)
        timing = Timings(search_ms=(time.perf_counter() - start) * 1000)
        version = self.searcher.manifest.version
        return [Result([(vid, paths.get(vid, ""), score) for vid, score in hits.row(row)],
                       version, timing) for row in range(len(vectors))]

    # --- lifecycle --------------------------------------------------------

    @property
    def accepts_images_and_text(self) -> bool:
        return self.embedder is not None

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close(timeout=30)
        self.searcher.close()


def _await(future: Future[np.ndarray], deadline: float | None,
           cancelled: threading.Event | None) -> np.ndarray:
    """The embedding, unless the deadline passes or the caller cancels first; then the
    request is withdrawn (the batcher skips cancelled futures)."""
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            future.cancel()
            raise DeadlineExceededError("deadline passed while waiting for the model")
        if cancelled is not None and cancelled.is_set():
            future.cancel()
            raise CancelledByClientError("the call was cancelled")
        step = remaining if cancelled is None else min(POLL_SECONDS, remaining or POLL_SECONDS)
        try:
            return future.result(timeout=step)
        except FutureTimeoutError:
            continue


def load_service(index_dir: Path | str, *, device: str = "auto", checkpoint: str | None = None,
                 config: ServiceConfig = ServiceConfig()) -> SearchService:
    """Open the current index version and load the model named in its manifest.

    Raises:
        ModelMismatchError: the loaded weights or preprocessing differ from the build's.
        WeightsUnavailableError, IndexDirectoryError: with messages for the user.
    """
    searcher = Searcher(index_dir)
    recorded = searcher.manifest.model
    if recorded.weights_sha256 == precomputed_identity(recorded.embed_dim).weights_sha256:
        return SearchService(searcher, None, config)
    embedder = load_embedder(EmbedderConfig(
        model=recorded.name, pretrained=recorded.pretrained,
        checkpoint=checkpoint or recorded.checkpoint, device=device))
    loaded = embedder.identity
    if loaded.weights_sha256 != recorded.weights_sha256:
        raise ModelMismatchError(
            f"the index was built with {recorded.name} weights {recorded.weights_sha256[:12]}, "
            f"but the loaded weights are {loaded.weights_sha256[:12]}; pass the build's "
            f"--checkpoint, or rebuild the index")
    if loaded.preprocess != recorded.preprocess:
        raise ModelMismatchError(f"preprocessing differs from the build's: {loaded.preprocess} "
                                 f"!= {recorded.preprocess}")
    return SearchService(searcher, embedder, config)
