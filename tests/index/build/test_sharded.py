"""Sharded builds (train once, add in 4 processes, merge with faiss) equal a single build;
the on-disk merge and a memory-mapped read search identically. Synthetic vectors, real faiss."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from index.ann import faiss_index as ann
from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.build.publish import IndexingOptions
from index.build.sharded import add_parts, merge_in_memory, merge_on_disk, read_mmap, train_once
from index.build.vector_import import import_vectors
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory
from tests.conftest import IVF_DIM
from tests.synthetic import clustered, keys


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
    single = ann.read_index(ivf_template.index_path(ivf_template.manifest()))
    merged = merge_in_memory(trained, files)
    assert len(files) == 4 and merged.ntotal == single.ntotal == 20_000
    for a, b in zip(lists(merged), lists(single), strict=True):
        np.testing.assert_array_equal(a, b)  # same ids, same order, per list
    q = clustered(100, IVF_DIM, seed=11)
    params = faiss.SearchParametersIVF(nprobe=16)
    (d1, i1), (d2, i2) = merged.search(q, 10, params=params), single.search(q, 10, params=params)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(d1, d2)


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
def test_build_with_index_shards_publishes_the_same_results(ivf_template, tmp_path):
    directory = IndexDirectory(tmp_path / "idx")
    import_vectors(directory, clustered(20_000, IVF_DIM), keys(20_000),
                   precomputed_identity(IVF_DIM), IndexingOptions(progress=False,
                                                                  index_shards=3))
    q = clustered(50, IVF_DIM, seed=13)
    a, b = Searcher(ivf_template), Searcher(directory)
    hits_a, hits_b = a.search(q, SearchParams(k=10)), b.search(q, SearchParams(k=10))
    np.testing.assert_array_equal(hits_a.ids, hits_b.ids)
    np.testing.assert_array_equal(hits_a.scores, hits_b.scores)
    a.close()
    b.close()
