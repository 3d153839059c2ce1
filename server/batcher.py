"""Micro-batching: concurrent requests share one model forward pass.

Request threads submit items and wait on futures; one worker thread takes the
first waiting item, gathers more for up to ``max_wait`` seconds (or until
``max_batch``), and runs them together. The model therefore runs on one thread
at a time, with the machine's cores inside each forward pass.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

log = logging.getLogger("visearch.server")

In = TypeVar("In")
Out = TypeVar("Out")


class BatcherClosedError(RuntimeError):
    """The batcher is shutting down and takes no more work."""


class MicroBatcher(Generic[In, Out]):
    def __init__(self, run: Callable[[Sequence[In]], Sequence[Out]], *, max_batch: int = 32,
                 max_wait: float = 0.002, name: str = "batcher"):
        self._run = run
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._queue: queue.Queue[tuple[In, Future[Out]] | None] = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self.batches = 0  # counters, for tests and metrics
        self.items = 0
        # Called with each batch's size from the worker thread (server.metrics); keep cheap.
        self.on_batch: list[Callable[[int], None]] = []
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: In) -> Future[Out]:
        future: Future[Out] = Future()
        with self._lock:
            if self._closed:
                raise BatcherClosedError("the server is shutting down")
            self._queue.put((item, future))
        return future

    @property
    def depth(self) -> int:
        """Items waiting for the next batch (approximate, as Queue.qsize is)."""
        return self._queue.qsize()

    def close(self, timeout: float | None = None) -> None:
        """Finish what was submitted, then stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.max_wait
            stop = False
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else \
                        self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._execute(batch)
            if stop:
                return

    def _execute(self, batch: list[tuple[In, Future[Out]]]) -> None:
        # Cancelled requests (client gone, deadline passed) are dropped before the model runs.
        live = [(item, f) for item, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            results = self._run([item for item, _ in live])
        except Exception as exc:  # noqa: BLE001 - delivered to every waiting request
            log.exception("batch of %d failed", len(live))
            for _, future in live:
                future.set_exception(exc)
            return
        self.batches += 1
        self.items += len(live)
        for observe in self.on_batch:
            observe(len(live))
        for (_, future), result in zip(live, results, strict=True):
            future.set_result(result)

