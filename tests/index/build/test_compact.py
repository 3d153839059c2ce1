"""Compaction: the vectors of deleted images go, every id keeps its image and vector."""

from __future__ import annotations

import numpy as np
import pytest

from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.build.compact import compact
from index.build.publish import IndexingOptions
from index.build.retire import delete_images
from index.build.vector_import import import_vectors
from index.check import check_directory
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory
from tests.conftest import run_visearch
from tests.synthetic import clustered, keys

DIM = 16
OPTIONS = IndexingOptions(progress=False)


@pytest.fixture()
def with_deletions(tmp_path) -> tuple[IndexDirectory, np.ndarray]:
    directory = IndexDirectory(tmp_path / "idx")
    vectors = clustered(1000, DIM)
    import_vectors(directory, vectors[:600], keys(600), precomputed_identity(DIM), OPTIONS,
                   shard_size=256)
    import_vectors(directory, vectors[600:], keys(400, 600), precomputed_identity(DIM),
                   OPTIONS, shard_size=256)
    delete_images(directory, ids=list(range(0, 1000, 3)), options=OPTIONS)
    return directory, vectors


def test_compaction_keeps_ids_vectors_and_answers(with_deletions):
    directory, vectors = with_deletions
    before = Searcher(directory)
    live = before.catalog.live_ids()
    stored = before.store.raw(live, np.float16)
    answers = before.search(vectors[:50], SearchParams(k=10))
    report = compact(directory, progress=False)
    assert report.shards_rewritten == 5 and report.vectors_removed == 334
    assert report.bytes_after < report.bytes_before  # 16-d rows: the 8-byte ids eat into it
    after = Searcher(directory)
    np.testing.assert_array_equal(after.catalog.live_ids(), live)
    np.testing.assert_array_equal(after.store.raw(live, np.float16), stored)  # bit for bit
    few = np.arange(0, len(live), 50)  # few ids: read a row at a time, same rows
    np.testing.assert_array_equal(after.store.raw(live[few], np.float16), stored[few])
    again = after.search(vectors[:50], SearchParams(k=10))
    np.testing.assert_array_equal(again.ids, answers.ids)
    with pytest.raises(IndexError, match="compaction"):
        after.store.get(np.array([0]))  # a deleted id: its vector is gone
    assert all(f.ok for f in check_directory(directory))
    assert compact(directory, progress=False).shards_rewritten == 0  # idempotent


def test_an_index_grows_and_retrains_after_compaction(with_deletions):
    directory, vectors = with_deletions
    compact(directory, progress=False)
    import_vectors(directory, clustered(50, DIM, seed=5), keys(50, 1000),
                   precomputed_identity(DIM), OPTIONS)
    searcher = Searcher(directory)
    assert int(searcher.catalog.live_ids()[-1]) == 1049 and searcher.ntotal == 666 + 50
    report = compact(directory, retrain=True, progress=False)
    assert report.indexing is not None and report.indexing.manifest.live_count == 716
    assert all(f.ok for f in check_directory(directory))


def test_compact_command(with_deletions):
    directory, _ = with_deletions
    done = run_visearch("compact", str(directory.path), "--quiet", check=True)
    assert "removed 334 vectors of deleted images" in done.stdout and "ids unchanged" in done.stdout
