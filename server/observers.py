"""What watches answered queries off the request path: drift (server/drift.py) and live
recall (server/recall.py).

The service calls each observer with the searcher, the queries, their unit vectors and
their results once a call is answered. An observer only picks what it wants and puts it
on its own bounded queue (dropping, and counting, when the queue is full); a daemon
thread does the work. So a request never waits for an observer, whatever it computes.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from index.ann.search import Searcher
from server.query import Query
from server.rerank_path import needs_rerank
from server.service import Result

log = logging.getLogger("visearch.server")

Item = TypeVar("Item")
# (searcher, queries, vectors or errors, results or errors), as SearchService.search_many has them
Observer = Callable[[Searcher, Sequence[Query], Sequence[Any], Sequence[Any]], None]


def plain(query: Query) -> bool:
    """An image, text or vector query without re-ranking: its hits are the index's top k."""
    return query.like_id is None and query.like_key is None and not needs_rerank(query)


class Worker(Generic[Item]):
    """A bounded queue and the daemon thread that empties it into ``handle``, a list of
    whatever queued up at a time (at most ``size``), so the work is batched."""

    def __init__(self, name: str, handle: Callable[[list[Item]], None], size: int = 256,
                 linger: float = 0.0):
        self.dropped = 0
        self.linger = linger  # seconds to let items gather after the first: fewer wake-ups
        self._queue: queue.Queue[Item | None] = queue.Queue(size)
        self._handle = handle
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def offer(self, item: Item) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def join(self) -> None:
        """Wait until everything offered so far is handled (tests)."""
        self._queue.join()

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            if self.linger and items[0] is not None:
                # Waking for every query costs the request threads the GIL at each answer
                # (+0.13 ms p50 when measured); one wake-up per ``linger`` costs nothing.
                time.sleep(self.linger)
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in items
            try:
                self._handle([item for item in items if item is not None])
            except Exception:  # noqa: BLE001 - an observer must never take the server down
                log.exception("%s failed on answered queries", self._thread.name)
            finally:
                for _ in items:
                    self._queue.task_done()
            if stop:
                return

    def close(self, timeout: float = 5.0) -> None:
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)


def answered(queries: Sequence[Query], vectors: Sequence[Any], results: Sequence[Any]
             ) -> list[int]:
    """Positions of plain queries that were answered (not errors)."""
    return [i for i, q in enumerate(queries)
            if isinstance(results[i], Result) and isinstance(vectors[i], np.ndarray)
            and plain(q)]
