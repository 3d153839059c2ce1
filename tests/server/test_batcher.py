"""The micro-batcher groups concurrent work, skips cancelled work and drains on close."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from index.ann.query import SearchParams
from server.batcher import BatcherClosedError, MicroBatcher
from server.query import Query
from server.service import CancelledByClientError, DeadlineExceededError


def test_concurrent_submissions_share_batches():
    sizes: list[int] = []

    def double(items):
        sizes.append(len(items))
        time.sleep(0.01)
        return [2 * x for x in items]

    batcher = MicroBatcher(double, max_batch=8, max_wait=0.005)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda x: batcher.submit(x).result(timeout=10), range(64)))
    batcher.close()
    assert results == [2 * x for x in range(64)]
    assert max(sizes) <= 8 and len(sizes) < 64 and sum(sizes) == 64


def test_cancelled_work_never_runs_and_close_drains():
    seen: list[int] = []
    gate = threading.Event()

    def record(items):
        gate.wait(5)
        seen.extend(items)
        return items

    batcher = MicroBatcher(record, max_batch=1, max_wait=0)
    first = batcher.submit(1)  # blocks the worker on the gate
    time.sleep(0.05)
    cancelled = batcher.submit(2)
    assert cancelled.cancel()
    kept = batcher.submit(3)
    gate.set()
    batcher.close(timeout=5)
    assert first.result() == 1 and kept.result() == 3 and seen == [1, 3]
    with pytest.raises(BatcherClosedError):
        batcher.submit(4)


def test_errors_reach_every_waiting_caller():
    def explode(items):
        raise RuntimeError("model fell over")

    batcher = MicroBatcher(explode, max_batch=4, max_wait=0.01)
    futures = [batcher.submit(i) for i in range(3)]
    for f in futures:
        with pytest.raises(RuntimeError, match="fell over"):
            f.result(timeout=5)
    batcher.close()


def test_service_drops_a_cancelled_call(server, corpus):
    service = server.servicer.service
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(CancelledByClientError):
        service.search(Query(SearchParams(k=3), image=corpus[0].read_bytes()), timeout=5,
                       cancelled=cancelled)
    live = threading.Event()
    result = service.search(Query(SearchParams(k=3), image=corpus[0].read_bytes()), timeout=5,
                            cancelled=live)
    assert result.hits[0][1] == corpus[0].name  # (id, path relative to the root, score)


def test_service_raises_deadline_exceeded(server, corpus):
    service = server.servicer.service
    with pytest.raises(DeadlineExceededError):
        service.search(Query(SearchParams(k=3), image=corpus[0].read_bytes()), timeout=0.0)
    result = service.search(Query(SearchParams(k=3), vector=np.ones(64, np.float32)), timeout=5)
    assert len(result.hits) == 3
