"""Raw vector shards on their own: written atomically, read back by id, checked against the
catalog's shard list."""

from __future__ import annotations

import numpy as np
import pytest

from index.store.catalog import Shard
from index.store.vectors import (
    VectorStore,
    VectorStoreError,
    remove_orphans,
    sample_ids,
    write_shard,
)
from tests.synthetic import clustered


def test_vectors_come_back_by_id_across_shards(tmp_path):
    vectors = clustered(30, 16)
    shards = [write_shard(tmp_path, 0, 0, vectors[:20], "float32"),
              write_shard(tmp_path, 1, 20, vectors[20:], "float32")]
    store = VectorStore(tmp_path, shards, 16)
    assert store.count == 30
    ids = np.array([29, 0, 19, 20, 5])
    np.testing.assert_allclose(store.get(ids), vectors[ids], rtol=1e-6)
    got = np.concatenate([v for _, v in store.iter_batches(np.arange(30), batch_size=7)])
    np.testing.assert_allclose(got, vectors, rtol=1e-6)


def test_few_and_many_ids_read_the_same_rows_from_many_shards(tmp_path):
    """A re-rank's candidates (few ids, dozens of shards) are read a row at a time, a batch
    by one slice per shard: both return every row in the order asked."""
    vectors = clustered(200, 8)
    shards = [write_shard(tmp_path, n, 5 * n, vectors[5 * n:5 * n + 5], "float32")
              for n in range(40)]
    store = VectorStore(tmp_path, shards, 8)
    rng = np.random.default_rng(2)
    for size in (1, 7, 150, 200):  # 4 per shard (160) is where the row-at-a-time path ends
        ids = rng.permutation(200)[:size]
        np.testing.assert_array_equal(store.raw(ids), vectors[ids])
    np.testing.assert_array_equal(store.raw(np.array([3, 3, 199, 0])), vectors[[3, 3, 199, 0]])
    assert store.raw(np.array([], dtype=np.int64)).shape == (0, 8)


def test_float16_shards_are_renormalised_on_read(tmp_path):
    vectors = clustered(10, 32)
    store = VectorStore(tmp_path, [write_shard(tmp_path, 0, 0, vectors, "float16")], 32)
    got = store.get(np.arange(10))
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(got, vectors, atol=2e-3)


def test_out_of_range_ids_and_mismatched_shards_are_errors(tmp_path):
    shard = write_shard(tmp_path, 0, 0, clustered(4, 8), "float16")
    store = VectorStore(tmp_path, [shard], 8)
    with pytest.raises(IndexError):
        store.get(np.array([4]))
    with pytest.raises(VectorStoreError, match="shape"):
        VectorStore(tmp_path, [Shard(0, shard.file, 0, 5)], 8)
    with pytest.raises(VectorStoreError, match="expected 0"):
        VectorStore(tmp_path, [Shard(0, shard.file, 3, 4)], 8)
    with pytest.raises(VectorStoreError, match="cannot read"):
        VectorStore(tmp_path, [Shard(1, "shard-000001.npy", 0, 4)], 8)
    with pytest.raises(ValueError, match="dtype"):
        write_shard(tmp_path, 1, 4, clustered(4, 8), "int8")


def test_orphans_of_a_killed_build_are_removed(tmp_path):
    kept = write_shard(tmp_path, 0, 0, clustered(4, 8), "float16")
    orphan = write_shard(tmp_path, 1, 4, clustered(4, 8), "float16")
    (tmp_path / ".shard-000002.npy.abc.tmp").write_bytes(b"partial")
    removed = remove_orphans(tmp_path, [kept])
    assert sorted(p.name for p in removed) == sorted([orphan.file, ".shard-000002.npy.abc.tmp"])
    assert [p.name for p in tmp_path.iterdir()] == [kept.file]


def test_sample_ids_is_a_seeded_sorted_subset():
    ids = np.arange(100, 200)
    sample = sample_ids(ids, 10, seed=3)
    assert len(sample) == 10 and set(sample) <= set(ids)
    assert np.all(np.diff(sample) > 0)
    np.testing.assert_array_equal(sample, sample_ids(ids, 10, seed=3))
    assert not np.array_equal(sample, sample_ids(ids, 10, seed=4))
    np.testing.assert_array_equal(sample_ids(ids, 500), ids)
