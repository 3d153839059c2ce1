"""`visearch build --ondisk`: a sharded build published as an on-disk merged index
(index.ivfdata beside index.faiss in the version folder) searches exactly like the
in-RAM build; it survives renames, republishing and the next build; `serve --mmap`
maps any index file and answers the same."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from common.errors import VisearchError
from index.ann import faiss_index as ann
from index.ann.params import IndexOverrides
from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.build.publish import IndexingOptions
from index.build.vector_import import import_vectors
from index.check import check_directory
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory
from server.app import SearchServer
from server.client import SearchClient
from server.config import ServerConfig
from tests.synthetic import clustered, keys

DIM = 32
N = 12_000
SPEC = IndexOverrides(spec="IVF32,Flat")
PARAMS = SearchParams(k=10, nprobe=8)

pytestmark = pytest.mark.slow


def build(path, vectors, ondisk: bool, start: int = 0) -> IndexDirectory:
    directory = IndexDirectory(path)
    import_vectors(directory, vectors, keys(len(vectors), start), precomputed_identity(DIM),
                   IndexingOptions(progress=False, overrides=SPEC, index_shards=2,
                                   ondisk=ondisk))
    return directory


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    base = tmp_path_factory.mktemp("ondisk")
    vectors = clustered(N, DIM, clusters=40)
    return build(base / "disk", vectors, True), build(base / "ram", vectors, False), vectors


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_on_disk_index_searches_like_the_in_ram_one(pair):
    disk, ram, vectors = pair
    manifest = disk.manifest()
    folder = disk.index_path(manifest).parent
    assert (folder / "index.ivfdata").stat().st_size > 0 and manifest.build["ondisk"]
    assert manifest.live_count == N and check_directory(disk) and \
        all(f.ok for f in check_directory(disk))
    q = vectors[:50]
    expected = Searcher(ram).search(q, PARAMS)
    got = Searcher(disk).search(q, PARAMS)
    np.testing.assert_array_equal(got.ids, expected.ids)
    ann.set_serve_mmap(True)
    try:
        for directory in (disk, ram):
            mapped = Searcher(directory).search(q, PARAMS)
            np.testing.assert_array_equal(mapped.ids, expected.ids)
    finally:
        ann.set_serve_mmap(False)


def test_republish_and_next_build_keep_versions_whole(pair, tmp_path):
    import shutil

    disk, _, vectors = pair
    copy = IndexDirectory(tmp_path / "copy")
    shutil.copytree(disk.path, copy.path)  # the version reads its lists from its own folder
    first = copy.manifest()
    old_lists = copy.index_path(first).with_name("index.ivfdata")
    before = sha(old_lists)
    tuned = copy.republish(first, default_nprobe=4)
    assert copy.index_path(tuned).with_name("index.ivfdata").is_file()
    q = vectors[:20]
    base = Searcher(copy, first.version).search(q, PARAMS)
    np.testing.assert_array_equal(Searcher(copy).search(q, PARAMS).ids, base.ids)
    more = clustered(500, DIM, clusters=5, seed=7)
    import_vectors(copy, more, keys(500, N), precomputed_identity(DIM),
                   IndexingOptions(progress=False, overrides=SPEC, ondisk=True))
    latest = copy.manifest()
    assert latest.live_count == N + 500 and latest.build["retrained"]
    assert sha(old_lists) == before  # the rebuild never wrote into an older version's lists
    hit = Searcher(copy).search(more[:1], PARAMS).ids[0, 0]
    assert hit == N


def test_serve_mmap_answers_and_refuses_writable(pair):
    disk, _, vectors = pair
    config = ServerConfig(index_dir=disk.path, port=0, device="cpu", drain_seconds=0.0,
                          follow_seconds=0, mmap=True)
    running = SearchServer(config)
    running.start()
    try:
        running.load()
        with SearchClient(f"127.0.0.1:{running.port}", timeout=30) as client:
            assert client.search_vector(vectors[123], k=1, nprobe=8).hits[0].id == 123
    finally:
        running.stop(grace=1)
        ann.set_serve_mmap(False)
    writable = SearchServer(ServerConfig(index_dir=disk.path, port=0, device="cpu",
                                         drain_seconds=0.0, mmap=True, writable=True))
    with pytest.raises(VisearchError, match="--mmap serves a read-only index"):
        writable.load()
    writable.stop(grace=0)
