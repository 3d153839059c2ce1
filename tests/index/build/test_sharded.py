"""Sharded builds (train once, add in 4 processes, merge with faiss) equal a single build;
the on-disk merge and a memory-mapped read search identically. Synthetic vectors, real faiss."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from index.ann import faiss_index as ann
from index.build.publish import IndexingOptions
from index.build.sharded import add_parts, merge_in_memory, merge_on_disk, read_mmap, train_once
from index.build.vector_import import import_vectors
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory
from tests.conftest import IVF_DIM
from tests.synthetic import clustered, keys


def single_build(trained: faiss.Index, directory: IndexDirectory) -> faiss.Index:
    """The same trained parameters with every vector added in this one process. (Training
    is compared nowhere: faiss k-means results depend on the OpenMP thread count, which
    other tests in this process change.)"""
    index = faiss.clone_index(trained)
    index.reset()
    catalog = directory.catalog(readonly=True)
    store = directory.vector_store(catalog, index.d)
    live = catalog.live_ids()
    ann.add_batches(index, store.iter_batches(live), len(live), progress=False)
    catalog.close()
    return index


def assert_same(a: faiss.Index, b: faiss.Index, seed: int) -> None:
    """Same ids in the same order per list, and identical search results."""
    assert a.ntotal == b.ntotal
    for list_a, list_b in zip(lists(a), lists(b), strict=True):
        np.testing.assert_array_equal(list_a, list_b)
    q = clustered(100, IVF_DIM, seed=seed)
    params = faiss.SearchParametersIVF(nprobe=16)
    (d1, i1), (d2, i2) = a.search(q, 10, params=params), b.search(q, 10, params=params)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(d1, d2)


def lists(index: faiss.Index) -> list[np.ndarray]:
    invlists = ann.ivf_of(index).invlists
    return [faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
            for i in range(invlists.nlist)]


@pytest.fixture(scope="module")
def parts(ivf_template, tmp_path_factory):
    catalog = ivf_template.catalog(readonly=True)
    m = ivf_template.manifest()
    store = ivf_template.vector_store(catalog, m.dim)
    live = catalog.live_ids()
    trained = train_once(m.index, m.dim, store, live)
    work = tmp_path_factory.mktemp("parts")
    files = add_parts(trained, store.directory, store.shards, m.dim, live, 4, work)
    catalog.close()
    return trained, files, work


@pytest.mark.slow
def test_four_shards_merged_equal_the_single_build(ivf_template, parts):
    trained, files, _ = parts
    merged = merge_in_memory(trained, files)
    assert len(files) == 4 and merged.ntotal == 20_000
    assert_same(merged, single_build(trained, ivf_template), seed=11)


@pytest.mark.slow
def test_on_disk_merge_and_mmap_read_search_like_the_in_memory_index(parts, tmp_path):
    trained, files, _ = parts
    in_memory = merge_in_memory(trained, files)
    on_disk = merge_on_disk(trained, files, tmp_path / "lists.ivfdata")
    faiss.write_index(on_disk, str(tmp_path / "ondisk.faiss"))
    faiss.write_index(in_memory, str(tmp_path / "memory.faiss"))
    reread = faiss.read_index(str(tmp_path / "ondisk.faiss"))
    mapped = read_mmap(tmp_path / "memory.faiss")
    q = clustered(100, IVF_DIM, seed=12)
    params = faiss.SearchParametersIVF(nprobe=16)
    want = in_memory.search(q, 10, params=params)
    for index in (on_disk, reread, mapped):
        got = index.search(q, 10, params=params)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.slow
def test_build_with_index_shards_publishes_the_merged_index(tmp_path):
    directory = IndexDirectory(tmp_path / "idx")
    import_vectors(directory, clustered(20_000, IVF_DIM), keys(20_000),
                   precomputed_identity(IVF_DIM), IndexingOptions(progress=False,
                                                                  index_shards=3))
    published = ann.read_index(directory.index_path(directory.manifest()))
    assert_same(published, single_build(published, directory), seed=13)
