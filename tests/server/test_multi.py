"""Several index directories behind one real gRPC server on 127.0.0.1: the merged top-k
equals an exact search over the union, ids are namespaced per shard and every id-taking
feature resolves them, shards swap independently."""

from __future__ import annotations

import time

import numpy as np
import pytest

from index.ann.faiss_index import gpu_count
from index.ann.multi import SHARD_SHIFT, MultiSearcher, ShardModelMismatchError, open_shards
from index.ann.params import IndexOverrides
from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.build.publish import IndexingOptions
from index.build.vector_import import import_vectors
from index.store import metadata
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory
from server.app import SearchServer
from server.client import SearchClient
from server.config import ServerConfig
from tests.server.conftest import serving
from tests.synthetic import clustered, keys

DIM = 32
SIZES = (1500, 1000, 800)  # Flat shards (N < 10k)
QUIET = IndexingOptions(progress=False)


def build_shard(path, vectors: np.ndarray, start: int, options=QUIET) -> IndexDirectory:
    directory = IndexDirectory(path)
    import_vectors(directory, vectors, keys(len(vectors), start), precomputed_identity(DIM),
                   options)
    return directory


def union(vectors: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """All shards' vectors (unit length) and their namespaced ids."""
    ids = np.concatenate([np.arange(len(v)) | (i << SHARD_SHIFT) for i, v in enumerate(vectors)])
    allv = np.concatenate(vectors)
    return allv / np.linalg.norm(allv, axis=1, keepdims=True), ids


def exact(allv: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int,
          exclude: set[int] = frozenset()) -> list[int]:  # type: ignore[assignment]
    """Exact top-k of the union as stored (float16), ties by namespaced id."""
    stored = allv.astype(np.float16).astype(np.float32)
    scores = stored @ (q / np.linalg.norm(q))
    order = [int(ids[j]) for j in np.lexsort((ids, -scores)) if int(ids[j]) not in exclude]
    return order[:k]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    base = tmp_path_factory.mktemp("multi")
    vectors = [clustered(n, DIM, clusters=20, seed=s) for s, n in enumerate(SIZES)]
    # An exact copy across shards: shard 1's item 5 is shard 0's item 7 (a tie).
    vectors[1][5] = vectors[0][7]
    dirs = [build_shard(base / f"s{i}", v, 10_000 * i) for i, v in enumerate(vectors)]
    for i, directory in enumerate(dirs):
        catalog = directory.catalog()
        metadata.write_fields(catalog, [(j, {"shard": i, "odd": j % 2}) for j in
                                        range(SIZES[i])], {"shard": "integer", "odd": "integer"})
        catalog.close()
    return dirs, vectors


@pytest.fixture(scope="module")
def server(shards):
    dirs, _ = shards
    config = ServerConfig(index_dir=dirs[0].path, shard_dirs=tuple(d.path for d in dirs),
                          port=0, device="cpu", drain_seconds=0.0, follow_seconds=0)
    with serving(config) as running:
        yield running


@pytest.fixture()
def client(server):
    with SearchClient(f"127.0.0.1:{server.port}", timeout=30) as c:
        yield c


def test_merged_top_k_is_exact_over_the_union(shards, client):
    _, vectors = shards
    allv, ids = union(vectors)
    rng = np.random.default_rng(5)
    for q in rng.standard_normal((10, DIM)).astype(np.float32):
        got = client.search_vector(q, k=20)
        assert [h.id for h in got.hits] == exact(allv, ids, q, 20)
        scores = [h.score for h in got.hits]
        assert scores == sorted(scores, reverse=True)
    # The copy in two shards: equal scores, shard 0's first (ties by namespaced id).
    hits = client.search_vector(vectors[0][7], k=2).hits
    assert [h.id for h in hits] == [7, (1 << SHARD_SHIFT) | 5]
    assert hits[0].score == hits[1].score


def test_ids_resolve_everywhere(shards, client):
    _, vectors = shards
    allv, ids = union(vectors)
    liked = (2 << SHARD_SHIFT) | 11
    got = client.search_like(liked, k=10)
    assert liked not in [h.id for h in got.hits]
    assert [h.id for h in got.hits] == exact(allv, ids, vectors[2][11], 10, {liked})
    # Paths come from the hit's own shard (keys start at 10,000 * shard).
    first = got.hits[0].id
    assert keys(1, 10_000 * (first >> SHARD_SHIFT) + (first & ((1 << SHARD_SHIFT) - 1)))[0] \
        .endswith(got.hits[0].path)
    # like_key, exclusions by id and by key, fields, pages: all over the union.
    by_key = client.search_like(keys(1, 20_011)[0], k=10)
    assert [h.id for h in by_key.hits] == [h.id for h in got.hits]
    q = vectors[1][3]
    top = exact(allv, ids, q, 12)
    dropped = {top[0], top[3]}
    excluded = client.search_vector(q, k=10, exclude_ids=sorted(dropped),
                                    exclude_keys=[got.hits[0].path], fields=["shard"])
    assert [h.id for h in excluded.hits] == exact(allv, ids, q, 10,
                                                  dropped | {got.hits[0].id})
    assert all(h.fields["shard"] == str(h.id >> SHARD_SHIFT) for h in excluded.hits)
    page1 = client.search_vector(q, k=5, offset=0, exclude_ids=[-1])
    page2 = client.search_vector(q, k=5, page_token=page1.next_page_token)
    assert [h.id for h in page1.hits + page2.hits] == exact(allv, ids, q, 10)
    # A filter runs in every shard; matched counts the union.
    odd = client.search_vector(q, k=10, filter="odd = 1")
    assert odd.matched == sum(n // 2 for n in SIZES)
    assert all(h.id % 2 == 1 for h in odd.hits)
    assert [h.id for h in odd.hits] == [i for i in exact(allv, ids, q, 200) if i % 2][:10]
    # The copy in shards 0 and 1 collapses across shards.
    collapsed = client.search_vector(vectors[0][7], k=3, collapse=True)
    assert collapsed.hits[0].id == 7
    assert (1 << SHARD_SHIFT) | 5 in collapsed.hits[0].collapsed_ids


def test_unknown_shard_id_is_not_found(client):
    import grpc

    with pytest.raises(grpc.RpcError) as err:
        client.search_like(7 << SHARD_SHIFT, k=3)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_info_lists_shards_and_each_swaps_alone(shards, server, client):
    dirs, vectors = shards
    info = client.info()
    assert int(info["vector_count"]) == sum(SIZES)
    assert [int(s["vector_count"]) for s in info["shards"]] == list(SIZES)
    assert [int(s["id_base"]) for s in info["shards"]] == [i << SHARD_SHIFT for i in range(3)]
    before = [s["index_version"] for s in info["shards"]]
    extra = clustered(50, DIM, clusters=3, seed=99)
    import_vectors(dirs[1], extra, keys(50, 50_000), precomputed_identity(DIM), QUIET)
    server.live.check_now()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        info = client.info()
        if info["shards"][1]["index_version"] != before[1]:
            break
        time.sleep(0.05)
    after = [s["index_version"] for s in info["shards"]]
    assert after[1] == before[1] + 1 and after[0] == before[0] and after[2] == before[2]
    assert int(info["shards"][1]["vector_count"]) == SIZES[1] + 50
    hits = client.search_vector(extra[0], k=1).hits
    assert hits[0].id == (1 << SHARD_SHIFT) | SIZES[1]


def test_shards_of_different_models_are_refused(tmp_path, shards):
    dirs, _ = shards
    other = IndexDirectory(tmp_path / "other")
    import_vectors(other, clustered(100, 16), keys(100), precomputed_identity(16), QUIET)
    with pytest.raises(ShardModelMismatchError, match="another model"):
        open_shards([dirs[0].path, other.path])


def test_ivf_shards_merge_each_shards_answer(tmp_path):
    """IVF-PQ shards: the merged top-k is exactly the best of the shards' own answers, and
    recall against an exact search over the union stays high."""
    options = IndexingOptions(progress=False, overrides=IndexOverrides(spec="IVF16,PQ8"))
    vectors = [clustered(3000, DIM, clusters=20, seed=10 + s) for s in range(2)]
    searchers = [Searcher(build_shard(tmp_path / f"ivf{i}", v, 10_000 * i, options).path)
                 for i, v in enumerate(vectors)]
    multi = MultiSearcher(searchers)
    allv, ids = union(vectors)
    q = np.random.default_rng(3).standard_normal((20, DIM)).astype(np.float32)
    params = SearchParams(k=10, nprobe=4)
    merged = multi.search(q, params)
    parts = [s.search(q, params) for s in searchers]
    recall = []
    for row in range(len(q)):
        pooled = [(float(sc), int(i) | (s << SHARD_SHIFT)) for s, h in enumerate(parts)
                  for i, sc in zip(h.ids[row], h.scores[row], strict=True) if i >= 0]
        best = [i for _, i in sorted(pooled, key=lambda t: (-t[0], t[1]))[:10]]
        assert merged.ids[row].tolist() == best
        recall.append(len(set(best) & set(exact(allv, ids, q[row], 10))) / 10)
    assert np.mean(recall) >= 0.8
    multi.close()


def test_serve_takes_a_folder_of_shards(tmp_path, shards):
    import shutil

    from cli.serve import NotAnIndexError, shard_paths

    dirs, _ = shards
    for name, d in (("b", dirs[1]), ("a", dirs[0])):
        (tmp_path / "set").mkdir(exist_ok=True)
        shutil.copytree(d.path, tmp_path / "set" / name)
    assert shard_paths([tmp_path / "set"]) == [tmp_path / "set" / "a", tmp_path / "set" / "b"]
    assert shard_paths([dirs[2].path, tmp_path / "set"])[0] == dirs[2].path
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotAnIndexError, match="holds none"):
        shard_paths([tmp_path / "empty"])


@pytest.mark.skipif(gpu_count() > 0, reason="this machine's faiss has GPUs")
def test_gpus_flag_without_gpus_serves_from_the_cpu(shards, caplog):
    import logging

    from index.ann import gpu_serve
    from index.ann.gpu_setting import GpuServing

    dirs, vectors = shards
    config = ServerConfig(index_dir=dirs[0].path, shard_dirs=tuple(d.path for d in dirs[:2]),
                          port=0, device="cpu", drain_seconds=0.0, follow_seconds=0,
                          gpus=GpuServing("shard", 2))
    running = SearchServer(config)
    running.start()
    try:
        with caplog.at_level(logging.WARNING, logger="visearch.index"):
            running.load()
        assert "--gpus shard:2: faiss sees no GPU" in caplog.text
        with SearchClient(f"127.0.0.1:{running.port}", timeout=30) as c:
            assert c.search_vector(vectors[1][9], k=1).hits[0].id == (1 << SHARD_SHIFT) | 9
    finally:
        running.stop(grace=1)
        gpu_serve.configure(GpuServing())


def test_ivf_pq_pages_over_shards_concatenate_to_the_unpaged_ranking(tmp_path):
    """With re-ranking each shard's answer is in tier order (a deeper tier may start above
    the last one's end); the merge keeps pages of the union joined up, as one index's are."""
    from index.rerank import multi as multi_rank
    from index.rerank.stage import Rerank

    options = IndexingOptions(progress=False, tune=False,
                              overrides=IndexOverrides(spec="IVF16,PQ4"))
    vectors = [clustered(3000, DIM, clusters=20, seed=20 + s) for s in range(2)]
    multi = MultiSearcher([Searcher(build_shard(tmp_path / f"pq{i}", v, 10_000 * i,
                                                options).path)
                           for i, v in enumerate(vectors)])
    queries = multi.prepare(clustered(30, DIM, clusters=20, seed=99))
    params = SearchParams(k=7, nprobe=4, refine_factor=4)
    for q in queries:
        unpaged = [h.id for h in multi_rank.rank(multi, q[None], SearchParams(
            k=28, nprobe=4, refine_factor=4), Rerank(filter=None)).hits]
        paged = [h.id for n in range(4) for h in
                 multi_rank.rank(multi, q[None], params, Rerank(offset=7 * n)).hits]
        assert paged == unpaged
        assert len(set(paged)) == len(paged)
    multi.close()


def test_multi_index_paths_and_thumbnails_are_shown_as_one_index_shows_them(
        tmp_path, index_dir, corpus):
    """Two copies of the image index (untrained tiny model) served together: hits and
    thumbnails show each shard's paths below its build root, as the one-index server
    does, never the server's absolute paths."""
    import shutil

    copies = [shutil.copytree(index_dir, tmp_path / f"copy{i}") for i in range(2)]
    shown = []
    for dirs in (copies[:1], copies):
        config = ServerConfig(index_dir=copies[0], shard_dirs=tuple(dirs) if len(dirs) > 1
                              else (), port=0, device="cpu", drain_seconds=0.0)
        with serving(config) as running, \
                SearchClient(f"127.0.0.1:{running.port}", timeout=30) as client:
            hits = client.search_image(corpus[3], k=len(dirs)).hits
            shown.append([(h.id, h.path, client.thumbnail(h.id, 32)[1]) for h in hits])
    (alone,), together = shown
    assert alone[1] == alone[2] == corpus[3].name  # one index: below its build root
    assert sorted(together) == [(alone[0], alone[1], alone[1]),
                                ((1 << SHARD_SHIFT) | alone[0], alone[1], alone[1])]
