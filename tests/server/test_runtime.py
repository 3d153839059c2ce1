"""The swappable index handle: every request is answered wholly by one version."""

from __future__ import annotations

import threading
import time

import numpy as np

from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.build.publish import IndexingOptions
from index.build.vector_import import import_vectors
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory
from server.query import Query
from server.runtime import IndexHandle
from server.service import Result, SearchService
from tests.synthetic import clustered, keys

DIM, FIRST, SECOND = 16, 60, 40


def two_versions(tmp_path) -> tuple[Searcher, Searcher]:
    directory = IndexDirectory(tmp_path / "idx")
    vectors = clustered(FIRST + SECOND, DIM)
    options = IndexingOptions(progress=False)
    import_vectors(directory, vectors[:FIRST], keys(FIRST), precomputed_identity(DIM), options)
    import_vectors(directory, vectors[FIRST:], keys(SECOND, FIRST), precomputed_identity(DIM),
                   options)
    return Searcher(directory, 1), Searcher(directory, 2)


def test_swap_returns_the_replaced_version(tmp_path):
    first, second = two_versions(tmp_path)
    handle = IndexHandle(first)
    assert handle.swap(second) is first and handle.current is second


def test_requests_during_swaps_each_see_one_version(tmp_path):
    first, second = two_versions(tmp_path)
    service = SearchService(IndexHandle(first), None)
    rng = np.random.default_rng(0)
    # Several parameter sets make several faiss calls inside one request.
    batch = [Query(SearchParams(k=k), vector=rng.standard_normal(DIM).astype(np.float32))
             for k in (5, 100, 7, 100)]
    stop = threading.Event()
    seen: list[list[Result | Exception]] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            while not stop.is_set():
                seen.append(service.search_many(batch))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    deadline, swaps = time.monotonic() + 20, 0
    while len(seen) < 200 and time.monotonic() < deadline:
        service.index.swap(second if swaps % 2 == 0 else first)
        swaps += 1
        time.sleep(0.0005)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not errors and len(seen) >= 200 and swaps > 50
    versions = set()
    for results in seen:
        assert all(isinstance(r, Result) for r in results)
        answered = {r.index_version for r in results}  # type: ignore[union-attr]
        assert len(answered) == 1  # the whole request saw one version
        version = answered.pop()
        versions.add(version)
        limit = FIRST if version == 1 else FIRST + SECOND
        for result in results:
            assert all(hit_id < limit for hit_id, _, _ in result.hits)  # type: ignore[union-attr]
            assert len(result.hits) == min(limit, len(result.hits))  # type: ignore[union-attr]
        assert len(results[1].hits) == limit  # type: ignore[union-attr]  # k=100: every vector
    assert versions == {1, 2}


def test_a_refusal_is_kept_until_that_version_or_a_newer_one_is_swapped_in(tmp_path):
    """The same bookkeeping for the one handle and for each shard of a multi-index server."""
    from index.ann.multi import MultiSearcher
    from server.multi import MultiIndexHandle

    first, second = two_versions(tmp_path)
    multi = MultiIndexHandle(MultiSearcher([Searcher(first.directory, 1)]))
    for handle in (IndexHandle(first), multi.slots[0]):
        loaded = handle.loaded_at
        handle.refuse(2, "another model")
        handle.swap(first)  # an older version: the refusal still stands
        assert (handle.refused_version, handle.refused_reason) == (2, "another model")
        handle.swap(second)
        assert (handle.refused_version, handle.refused_reason) == (None, "")
        assert handle.loaded_at >= loaded
    shard = multi.info_fields()["shards"][0]  # type: ignore[index]
    assert shard["refused_version"] == 0 and shard["index_version"] == 2
