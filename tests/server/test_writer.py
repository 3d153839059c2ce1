"""Online writes: Upsert and Delete on a --writable server, durability, and replicas."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys

import grpc
import numpy as np
import pytest

from index.build.publish import IndexingOptions
from index.build.vector_import import import_vectors
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory, IndexDirectoryError
from server.app import SearchServer
from server.client import SearchClient
from server.config import ServerConfig
from tests.conftest import ROOT, cli_env, run_visearch
from tests.imagegen import picture
from tests.server.test_follow import _wait_for_version
from tests.server.test_lifecycle import _free_port, _wait_serving
from tests.synthetic import clustered, keys

DIM = 16
OPTIONS = IndexingOptions(progress=False)


def synthetic_index(path, n: int = 200) -> IndexDirectory:
    directory = IndexDirectory(path)
    import_vectors(directory, clustered(n, DIM), keys(n), precomputed_identity(DIM), OPTIONS)
    return directory


def start(directory: IndexDirectory, **config) -> SearchServer:
    server = SearchServer(ServerConfig(index_dir=directory.path, port=0, device="cpu",
                                       drain_seconds=0, **config))
    server.start()
    server.load()
    return server


@pytest.fixture()
def writable(tmp_path):
    directory = synthetic_index(tmp_path / "idx")
    server = start(directory, writable=True, publish_every=10_000, publish_seconds=3600)
    with SearchClient(f"127.0.0.1:{server.port}", timeout=30) as client:
        yield directory, server, client
    server.stop(grace=1)


def live_keys(directory: IndexDirectory) -> dict[str, int]:
    """key -> number of live rows (must be 1)."""
    with sqlite3.connect(directory.catalog_path) as db:
        return dict(db.execute("SELECT path, COUNT(*) FROM images WHERE deleted = 0 "
                               "GROUP BY path").fetchall())


def test_upsert_then_search_finds_it_first_and_delete_hides_it(writable):
    directory, _, client = writable
    fresh = clustered(5, DIM, seed=42)
    done = client.upsert_vectors([f"new-{i}" for i in range(5)], fresh,
                                 metadata=[{"sku": str(i)} for i in range(5)])
    ids = [u.id for u in done]
    assert ids == list(range(200, 205)) and all(u.error is None for u in done)
    for vid, vector in zip(ids, fresh, strict=True):
        top = client.search_vector(vector, k=1).hits[0]
        assert (top.id, top.path) == (vid, f"new-{ids.index(vid)}") and top.score > 0.999
    again = client.upsert_vectors(["new-0"], fresh[:1])[0]  # replaces: new id, old retired
    assert again.id == 205
    assert [h.id for h in client.search_vector(fresh[0], k=3).hits].count(200) == 0
    gone = client.delete(keys=["new-1", "nope"], ids=[7, 99_999])
    assert (gone.removed, gone.unknown_keys, gone.unknown_ids) == (2, ["nope"], [99_999])
    for vector in (fresh[1], clustered(200, DIM)[7]):
        assert not {201, 7} & {h.id for h in client.search_vector(vector, k=20).hits}
    info = client.info()
    assert info["writable"] and int(info["vector_count"]) == 200 + 5 - 2
    with sqlite3.connect(directory.catalog_path) as db:
        assert db.execute("SELECT value FROM metadata WHERE id = 202 AND key = 'sku'"
                          ).fetchone() == ("2",)


def test_bad_items_all_or_nothing_unless_partial(writable):
    _, _, client = writable
    good = clustered(1, DIM, seed=5)[0]
    with pytest.raises(grpc.RpcError) as info:
        client.upsert_vectors(["a", "b"], np.stack([good, np.zeros(DIM)]))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "item 1 ('b')" in info.value.details()
    assert client.search_vector(good, k=1).hits[0].path != "a"  # nothing written
    from visearch.v1 import search_pb2

    items = [search_pb2.UpsertItem(key="a", embedding=search_pb2.Embedding(values=good)),
             search_pb2.UpsertItem(key="img", image=b"not an image"),
             search_pb2.UpsertItem(key="")]
    result = client.upsert(items, allow_partial=True)
    assert result[0].error is None and result[0].id >= 200
    assert [r.error.code for r in result[1:]] == ["INVALID_ARGUMENT", "INVALID_ARGUMENT"]
    assert client.search_vector(good, k=1).hits[0].path == "a"


def test_writes_to_a_read_only_server_fail_precondition(tmp_path):
    server = start(synthetic_index(tmp_path / "idx"))
    try:
        with SearchClient(f"127.0.0.1:{server.port}", timeout=10) as client:
            with pytest.raises(grpc.RpcError) as info:
                client.delete(keys=["x"])
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "--writable" in info.value.details()
    finally:
        server.stop(grace=1)


def test_build_refused_and_replica_follows_what_the_writer_publishes(writable):
    directory, server, client = writable
    with pytest.raises(IndexDirectoryError, match=r"serve --writable \(pid"):
        import_vectors(directory, clustered(3, DIM), keys(3, 900), precomputed_identity(DIM),
                       OPTIONS)
    refused = run_visearch("delete", str(directory.path), "--id", "1")
    assert refused.returncode == 1 and "--writable" in refused.stderr
    replica = start(directory, follow_seconds=0.2)
    try:
        fresh = clustered(3, DIM, seed=77)
        client.upsert_vectors(["r0", "r1", "r2"], fresh)
        client.delete(ids=[3])
        version = server.live.publish()
        with SearchClient(f"127.0.0.1:{replica.port}", timeout=10) as reader:
            _wait_for_version(reader, version, 5.0)
            assert reader.search_vector(fresh[2], k=1).hits[0].path == "r2"
            assert 3 not in {h.id for h in reader.search_vector(clustered(200, DIM)[3],
                                                                  k=10).hits}
    finally:
        replica.stop(grace=1)


def test_upsert_images_with_the_model_and_the_cli(tmp_path, index_dir, corpus):
    shutil.copytree(index_dir, tmp_path / "idx")
    directory = IndexDirectory(tmp_path / "idx")
    server = start(directory, writable=True)
    try:
        image = tmp_path / "new.png"
        picture(4242).save(image)
        target = f"127.0.0.1:{server.port}"
        done = run_visearch("upsert", "--server", target, str(image), check=True)
        assert "upserted 1 images, failed 0" in done.stdout
        with SearchClient(target, timeout=30) as client:
            top = client.search_image(image, k=1).hits[0]
            assert top.path == str(image.resolve())
            run_visearch("delete", "--server", target, str(image), check=True)
            assert client.search_image(image, k=1).hits[0].path != str(image.resolve())
    finally:
        server.stop(grace=1)
    assert directory.manifest().build.get("online")  # published at shutdown


@pytest.mark.slow
def test_sigkill_after_acknowledged_upserts_loses_nothing_and_doubles_nothing(tmp_path):
    directory = synthetic_index(tmp_path / "idx", n=100)
    expected = {k: 1 for k in keys(100)}
    for round_no in range(10):
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", str(directory.path), "--port",
             str(port), "--device", "cpu", "--writable", "--publish-every", "1000000"],
            cwd=ROOT, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True)
        try:
            _wait_serving(port, proc, timeout=60)
            with SearchClient(f"127.0.0.1:{port}", timeout=30) as client:
                assert int(client.info()["vector_count"]) == len(expected)
                batch = [f"round{round_no}-{i}" for i in range(50)]
                vectors = clustered(50, DIM, seed=1000 + round_no)
                done = client.upsert_vectors(batch, vectors)
                assert all(u.error is None for u in done)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        expected.update({k: 1 for k in batch})
        assert live_keys(directory) == expected
    server = start(directory, writable=True)  # catches up, publishes, serves all of them
    try:
        with SearchClient(f"127.0.0.1:{server.port}", timeout=30) as client:
            assert int(client.info()["vector_count"]) == len(expected) == 600
            top = client.search_vector(vectors[7], k=1).hits[0]
            assert top.path == "round9-7"
        assert server.live.searcher.held_ids().tolist() == \
            sorted(server.live.catalog.live_ids().tolist())
    finally:
        server.stop(grace=1)
    assert run_visearch("check", str(directory.path)).returncode == 0


def test_a_ram_refine_store_index_re_ranks_written_rows_from_ram_too(tmp_path):
    """An index built with ``--refine-store ram`` keeps re-ranking from its RAM copy when
    served --writable: rows upserted after load are found and scored exactly, before and
    after a publish (which grows the copy by the new rows only)."""
    from index.ann.refine_store import RamStore

    directory, base = ivf_index(tmp_path / "idx", refine_store="ram")
    assert directory.manifest().index.refine_factor > 1
    server = start(directory, writable=True, publish_every=10_000, publish_seconds=3600)
    rng = np.random.default_rng(5)
    try:
        with SearchClient(f"127.0.0.1:{server.port}", timeout=30) as client:
            for round_ in range(2):
                searcher = server.servicer.service.index.current
                assert isinstance(searcher.store.base, RamStore)  # type: ignore[attr-defined]
                fresh = clustered(3, DIM, seed=70 + round_)
                ids = [u.id for u in client.upsert_vectors(
                    [f"w{round_}-{i}" for i in range(3)], fresh)]
                stored = fresh.astype(np.float16).astype(np.float32)
                stored /= np.linalg.norm(stored, axis=1, keepdims=True)
                for vid, vector in zip(ids, stored, strict=True):
                    q = vector + 0.05 * rng.standard_normal(DIM).astype(np.float32)
                    top = client.search_vector(q, k=1).hits[0]
                    assert top.id == vid
                    assert top.score == pytest.approx(float(vector @ (q / np.linalg.norm(q))),
                                                      abs=1e-5)
                old = base[11] / np.linalg.norm(base[11])
                assert client.search_vector(old, k=1).hits[0].score == pytest.approx(
                    float(searcher.store.get(np.array([11]))[0] @ old), abs=1e-6)
                assert server.live.publish() is not None  # type: ignore[union-attr]
            published = server.servicer.service.index.current.store.base  # type: ignore[attr-defined]
            assert isinstance(published, RamStore) and published.count == 2006
            np.testing.assert_allclose(published.get(np.array(ids)), stored, atol=2e-3)
    finally:
        server.stop(grace=1)


def ivf_index(path, **options) -> tuple[IndexDirectory, np.ndarray]:
    """2,000 synthetic vectors in a tuned IVF-PQ index (refining)."""
    from index.ann.params import IndexOverrides

    directory = IndexDirectory(path)
    vectors = clustered(2000, DIM)
    import_vectors(directory, vectors, keys(2000), precomputed_identity(DIM),
                   IndexingOptions(progress=False, overrides=IndexOverrides(spec="IVF16,PQ4"),
                                   **options))
    return directory, vectors


def test_published_versions_say_the_count_their_tuning_was_measured_at(tmp_path):
    from cli.info import describe

    directory, _ = ivf_index(tmp_path / "idx")
    built = directory.manifest().index
    assert built.tuned_recall is not None and built.tuned_vectors == 2000
    server = start(directory, writable=True, publish_every=10_000, publish_seconds=3600)
    try:
        with SearchClient(f"127.0.0.1:{server.port}", timeout=30) as client:
            client.upsert_vectors(["a", "b", "c"], clustered(3, DIM, seed=8))
            assert server.live.publish() is not None  # type: ignore[union-attr]
            info = client.info()
    finally:
        server.stop(grace=1)
    published = directory.manifest()
    assert published.live_count == 2003 and published.build["online"]
    assert published.index == built  # carried as measured, with the count measured at
    assert (int(info["vector_count"]), int(info["tuned_vector_count"])) == (2003, 2000)
    assert "tuned at 2,000 vectors (now 2,003): 10-recall@10" in describe(info)[-2]
