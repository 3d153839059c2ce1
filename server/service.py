"""The search service: query -> embedding -> nearest neighbours -> hits with paths.

No protobuf here; servicer.py translates. Image and text queries share one
micro-batched model (runtime.ModelSide); vector searches run in the request
threads. Each request takes the index handle once, so one version answers it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from common.errors import VisearchError
from embedder.decode import image_pixels
from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.store.contract import check_same_model, has_model
from server import like, rerank_path
from server.admission import PixelBudget
from server.config import ServiceConfig
from server.hitpaths import HitPaths
from server.query import Query, validate
from server.runtime import IndexHandle, ModelItem, ModelSide


class DeadlineExceededError(VisearchError):
    """The caller's deadline passed before the answer was ready."""


class CancelledByClientError(VisearchError):
    """The caller went away; its queries are dropped before they reach the model."""


class Cancellation(Protocol):
    """Whether the caller went away: a threading.Event, or the servicer's view of its call
    (asked only while a query waits for the model)."""

    def is_set(self) -> bool: ...


# How often a waiting request looks at its deadline and its cancellation flag.
POLL_SECONDS = 0.05


@dataclass
class Timings:
    decode_ms: float = 0.0
    embed_ms: float = 0.0
    search_ms: float = 0.0
    total_ms: float = 0.0
    # Parts of search_ms, for /metrics only (server/stages.py): re-ranking, catalog look-up.
    rerank_ms: float = 0.0
    lookup_ms: float = 0.0


@dataclass
class Result:
    hits: list[tuple[int, str, float]]  # (id, path, score), best first
    index_version: int
    timings: Timings = field(default_factory=Timings)
    # Re-ranked queries only (server/rerank_path.py): per-hit collapse and fields, paging.
    extras: list[rerank_path.HitExtra] = field(default_factory=list)
    page: rerank_path.PageInfo = field(default_factory=rerank_path.PageInfo)


class SearchService:
    """The served index (swappable) and the model that built it; safe from many threads."""

    def __init__(self, index: IndexHandle, model: ModelSide | None,
                 config: ServiceConfig = ServiceConfig()):
        self.index = index
        self.model = model
        self.config = config
        self.decode_budget = PixelBudget(config.max_decode_pixels)
        self.writer: Any = None  # server.writer.OnlineWriter on a --writable server
        self.hit_paths = HitPaths()  # shown paths per version: no catalog query for known ids
        # Called with every answered call, off the request path (server/observers.py).
        self.observers: list[Any] = []

    def search(self, query: Query, timeout: float | None = None,
               cancelled: Cancellation | None = None) -> Result:
        """One query's result; its error is raised."""
        outcome = self.search_many([query], timeout, cancelled)[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def search_many(self, queries: Sequence[Query], timeout: float | None = None,
                    cancelled: Cancellation | None = None,
                    searcher: Searcher | None = None) -> list[Result | Exception]:
        """Each query's result or its error, in order; one faiss call per parameter set.

        ``timeout`` (seconds) and ``cancelled`` stop the wait for the model and withdraw
        queries not yet embedded. ``searcher`` pins the version (default: the current one).
        """
        start = time.perf_counter()
        searcher = searcher or self.index.current
        deadline = None if timeout is None else time.monotonic() + timeout
        timings = [Timings() for _ in queries]
        vectors = self._embed_all(queries, searcher, timings, deadline, cancelled)
        results: list[Result | Exception] = [
            v if isinstance(v, Exception) else VisearchError("not searched") for v in vectors]
        groups: dict[SearchParams, list[int]] = {}
        for i, query in enumerate(queries):
            if isinstance(vectors[i], Exception):
                continue
            if rerank_path.needs_rerank(query):
                results[i] = self._reranked(searcher, query, vectors[i])  # type: ignore[arg-type]
            else:
                groups.setdefault(like.search_params(query), []).append(i)
        for params, members in groups.items():
            batch = np.concatenate([vectors[i] for i in members])  # type: ignore[misc]
            searched = _search_group(searcher, params, batch, self.config.absolute_paths,
                                     self.hit_paths)
            for i, outcome in zip(members, searched, strict=True):
                results[i] = like.drop_self(outcome, queries[i])
        total = (time.perf_counter() - start) * 1000
        for outcome, t in zip(results, timings, strict=True):
            t.total_ms = total
            if isinstance(outcome, Result):
                own = outcome.timings
                outcome.timings = replace(t, search_ms=own.search_ms, rerank_ms=own.rerank_ms,
                                          lookup_ms=own.lookup_ms)
        for observe in self.observers:
            observe(searcher, queries, vectors, results)
        return results

    def _reranked(self, searcher: Searcher, query: Query, vector: np.ndarray
                  ) -> Result | Exception:
        try:
            return rerank_path.search_one(searcher, query, vector, like.liked_id(searcher, query),
                                          self.config.absolute_paths)
        except Exception as exc:  # noqa: BLE001 - per-query errors travel in the result
            return exc

    def _embed_all(self, queries: Sequence[Query], searcher: Searcher, timings: list[Timings],
                   deadline: float | None, cancelled: Cancellation | None
                   ) -> list[np.ndarray | Exception]:
        """Unit vectors (1, dim) per query: validated and normalised here, once."""
        out: list[np.ndarray | Exception] = []
        pending = []
        for i, query in enumerate(queries):
            try:
                validate(query, searcher, self.config)
                if query.vector is not None:
                    out.append(searcher.prepare(query.vector))
                    continue
                liked = like.liked_id(searcher, query)
                if liked is not None:
                    out.append(like.stored_vector(searcher, liked))
                    continue
                assert self.model is not None  # validate() refused model queries otherwise
                item = self._model_item(query, timings[i], deadline)
                pending.append((i, time.perf_counter(), self.model.submit(item)))
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

    def _model_item(self, query: Query, timing: Timings, deadline: float | None) -> ModelItem:
        assert self.model is not None
        if query.text is not None:
            return ("text", query.text)
        data = query.image or b""
        wait = self.config.decode_wait_seconds
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
        start = time.perf_counter()
        with self.decode_budget.admit(image_pixels(data), timeout=wait):
            pixels = self.model.to_input(data, crop=query.crop)
        timing.decode_ms = (time.perf_counter() - start) * 1000
        return ("image", pixels)

    @property
    def accepts_images_and_text(self) -> bool:
        return self.model is not None

    def close(self) -> None:
        if self.model is not None:
            self.model.close()
        self.index.current.close()


def _search_group(searcher: Searcher, params: SearchParams, vectors: np.ndarray,
                  absolute_paths: bool, hit_paths: HitPaths) -> list[Result | Exception]:
    """One faiss call for queries sharing parameters; an error applies to all of them."""
    start = time.perf_counter()
    try:
        hits = searcher.search_unit(vectors, params)
        looked_up = time.perf_counter()
        paths = hit_paths.shown(searcher, hits.ids, absolute_paths)
    except Exception as exc:  # noqa: BLE001 - per-query errors travel in the result
        return [exc] * len(vectors)
    end = time.perf_counter()
    timing = Timings(search_ms=(end - start) * 1000, lookup_ms=(end - looked_up) * 1000)
    version = searcher.manifest.version
    return [Result([(vid, paths.get(vid, ""), score) for vid, score in hits.row(row)],
                   version, timing) for row in range(len(vectors))]


def _await(future: Future[np.ndarray], deadline: float | None,
           cancelled: Cancellation | None) -> np.ndarray:
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
    from embedder.embedder import load_embedder

    searcher = Searcher(index_dir)
    recorded = searcher.manifest.model
    if not has_model(recorded):
        return SearchService(IndexHandle(searcher), None, config)
    embedder = load_embedder(recorded.embedder_config(device=device, checkpoint=checkpoint,
                                                        base_dir=index_dir))
    check_same_model(recorded, embedder.identity)
    model = ModelSide(embedder, config.limits, batch_max=config.batch_max,
                      batch_wait_ms=config.batch_wait_ms)
    return SearchService(IndexHandle(searcher), model, config)
