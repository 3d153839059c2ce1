"""--gpus: parsing, the CPU fall-back where faiss has no GPU (tested here, faiss-cpu), and
the GPU branches (``gpu``-marked, skipped where faiss sees no GPU)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from index.ann import faiss_index as ann
from index.ann import gpu_serve
from index.ann.gpu_setting import GpuServing, GpuSettingError, parse_gpus
from index.ann.params import IndexOverrides
from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.build.publish import IndexingOptions
from index.build.vector_import import import_vectors
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory
from tests.synthetic import clustered, keys

DIM = 32


@pytest.fixture(autouse=True)
def cpu_afterwards():
    yield
    gpu_serve.configure(GpuServing())


@pytest.fixture(scope="module")
def ivf_dir(tmp_path_factory):
    directory = IndexDirectory(tmp_path_factory.mktemp("gpu") / "idx")
    import_vectors(directory, clustered(4000, DIM, clusters=30), keys(4000),
                   precomputed_identity(DIM),
                   IndexingOptions(progress=False, overrides=IndexOverrides(spec="IVF32,Flat")))
    return directory


def test_parse_gpus():
    assert parse_gpus("off") == GpuServing()
    assert parse_gpus("replicate") == GpuServing("replicate")
    assert parse_gpus("Shard:2") == GpuServing("shard", 2)
    assert parse_gpus("4") == GpuServing("replicate", 4)
    for bad in ("", "all", "shard:x", "0", "replicate:0", "mirror:2"):
        with pytest.raises(GpuSettingError, match="--gpus takes"):
            parse_gpus(bad)


@pytest.mark.skipif(ann.gpu_count() > 0, reason="this machine's faiss has GPUs")
@pytest.mark.parametrize("mode", ["replicate", "shard"])
def test_without_gpus_searches_on_the_cpu_and_says_so(ivf_dir, mode, caplog):
    cpu = Searcher(ivf_dir)
    q = clustered(5, DIM, clusters=30, seed=4)
    expected = cpu.search(q, SearchParams(k=10, nprobe=8))
    with caplog.at_level(logging.WARNING, logger="visearch.index"):
        used = gpu_serve.configure(GpuServing(mode))
    assert used == GpuServing()
    assert f"--gpus {mode}: faiss sees no GPU (faiss-cpu build); searching on the CPU" \
        in caplog.text
    searcher = Searcher(ivf_dir)
    assert searcher.gpu_index is None
    got = searcher.search(q, SearchParams(k=10, nprobe=8))
    np.testing.assert_array_equal(got.ids, expected.ids)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["replicate", "shard"])
def test_gpu_search_matches_the_cpu(ivf_dir, mode, caplog):
    if ann.gpu_count() == 0:
        pytest.skip("faiss has no GPU support here")
    cpu = Searcher(ivf_dir)
    q = clustered(50, DIM, clusters=30, seed=4)
    params = SearchParams(k=10, nprobe=8, refine_factor=1)
    expected = cpu.search(q, params)
    with caplog.at_level(logging.INFO, logger="visearch.index"):
        assert gpu_serve.configure(GpuServing(mode)) == GpuServing(mode)
    assert "over" in caplog.text and "GPU(s)" in caplog.text
    searcher = Searcher(ivf_dir)
    assert searcher.gpu_index is not None, caplog.text
    got = searcher.search(q, params)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in
                       zip(got.ids.tolist(), expected.ids.tolist(), strict=True)])
    assert overlap >= 0.95  # GPU PQ tables may round differently (float16)
    # Filtered searches stay on the CPU index; a second nprobe is a per-call parameter.
    wide = searcher.search(q, SearchParams(k=10, nprobe=32, refine_factor=1))
    assert wide.ids.shape == (50, 10) and (wide.ids >= 0).all()
