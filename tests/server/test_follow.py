"""Hot swap: a running server follows CURRENT while clients query it."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import replace

import grpc
import numpy as np
import pytest

from index.ann import faiss_index as ann
from index.ann.search import Searcher
from index.build.publish import IndexingOptions
from index.build.retire import delete_images
from index.build.vector_import import import_vectors
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory
from server.app import SearchServer
from server.client import SearchClient
from server.config import ServerConfig
from server.follow import VersionFollower
from server.runtime import IndexHandle
from tests.conftest import ROOT, cli_env
from tests.server.test_lifecycle import _free_port, _wait_serving
from tests.synthetic import clustered, keys

DIM = 16
OPTIONS = IndexingOptions(progress=False)


def held(directory: IndexDirectory, version: int) -> set[int]:
    manifest = directory.manifest(version)
    return set(ann.stored_ids(ann.read_index(directory.index_path(manifest))).tolist())


def _wait_for_version(client: SearchClient, version: int, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if int(client.info()["index_version"]) == version:
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"version {version} not served within {timeout} s")


@pytest.mark.slow
def test_clients_see_whole_versions_while_builds_and_deletes_publish(tmp_path):
    directory = IndexDirectory(tmp_path / "idx")
    vectors = clustered(400, DIM)
    import_vectors(directory, vectors[:200], keys(200), precomputed_identity(DIM), OPTIONS)
    versions = {1: held(directory, 1)}
    deleted_in: dict[int, int] = {}  # id -> first version without it
    server = SearchServer(ServerConfig(index_dir=directory.path, port=0, device="cpu",
                                       drain_seconds=0, follow_seconds=0.5))
    server.start()
    server.load()
    stop = threading.Event()
    responses: list[tuple[int, list[int]]] = []
    failures: list[BaseException] = []

    def query(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with SearchClient(f"127.0.0.1:{server.port}", timeout=30) as client:
            while not stop.is_set():
                try:
                    result = client.search_vector(vectors[rng.integers(0, 400)], k=10)
                except grpc.RpcError as exc:
                    failures.append(exc)
                    continue
                responses.append((result.index_version, [h.id for h in result.hits]))

    threads = [threading.Thread(target=query, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    try:
        next_key = 200
        for step in range(10):
            time.sleep(0.3)
            if step % 2 == 0:
                result = import_vectors(directory, vectors[next_key:next_key + 40],
                                        keys(40, next_key), precomputed_identity(DIM), OPTIONS)
                next_key += 40
                version = result.manifest.version
            else:
                live = sorted(versions[max(versions)])
                victims = live[step::7][:15]
                version = delete_images(directory, ids=victims,
                                        options=OPTIONS).indexing.manifest.version
                for v in victims:
                    deleted_in[v] = version
            versions[version] = held(directory, version)
        with SearchClient(f"127.0.0.1:{server.port}", timeout=30) as client:
            waited = _wait_for_version(client, max(versions), 5.0)
            time.sleep(0.3)  # a few responses from the final version
    finally:
        stop.set()
        for t in threads:
            t.join()
        server.stop(grace=1)
    assert not failures, failures[:3]
    assert len(responses) > 100 and waited < 5.0
    seen_versions = {v for v, _ in responses}
    assert max(versions) in seen_versions and len(seen_versions) >= 3
    for version, ids in responses:
        assert set(ids) <= versions[version], f"hits outside version {version}"
        assert not [i for i in ids if deleted_in.get(i, 10**9) <= version]


def test_a_version_of_another_model_is_refused_and_the_old_one_keeps_serving(tmp_path):
    directory = IndexDirectory(tmp_path / "idx")
    vectors = clustered(50, DIM)
    import_vectors(directory, vectors, keys(50), precomputed_identity(DIM), OPTIONS)
    server = SearchServer(ServerConfig(index_dir=directory.path, port=0, device="cpu",
                                       drain_seconds=0, follow_seconds=0.2))
    server.start()
    server.load()
    try:
        current = directory.manifest()
        other = replace(current.model, name="other", weights_sha256="f" * 64)
        directory.publish(replace(current, version=2, model=other),
                          lambda path: os.link(directory.index_path(current), path))
        with SearchClient(f"127.0.0.1:{server.port}", timeout=10) as client:
            deadline = time.monotonic() + 5
            while int(client.info().get("refused_version", 0)) != 2:
                assert time.monotonic() < deadline, client.info()
                time.sleep(0.05)
            info = client.info()
            assert info["index_version"] == 1 and "other" in info["refused_reason"]
            assert client.search_vector(vectors[3], k=1).hits[0].id == 3
            import_vectors(directory, clustered(5, DIM, seed=9), keys(5, 50),
                           precomputed_identity(DIM), OPTIONS)  # fine again: version 3
            _wait_for_version(client, 3, 5.0)
            assert client.info()["refused_version"] == 0
    finally:
        server.stop(grace=1)


def test_the_replaced_version_is_released_after_its_last_request(tmp_path):
    directory = IndexDirectory(tmp_path / "idx")
    import_vectors(directory, clustered(50, DIM), keys(50), precomputed_identity(DIM), OPTIONS)
    handle = IndexHandle(Searcher(directory))
    follower = VersionFollower(directory, handle, precomputed_identity(DIM), 3600)
    in_flight = handle.current  # a request still running on version 1
    gone = weakref.ref(in_flight)
    directory.republish(directory.manifest(), refine_factor=2)
    assert follower.poll() and handle.current.manifest.version == 2
    gc.collect()
    assert gone() is not None  # the running request still uses it
    del in_flight
    gc.collect()
    assert gone() is None
    follower.release_freed()


@pytest.mark.slow
def test_rss_after_20_swaps_stays_within_a_tenth_of_one_version():
    result = subprocess.run([sys.executable, "scripts/measure_swap_rss.py", "--n", "60000",
                             "--dim", "64", "--swaps", "20"], capture_output=True, text=True,
                            cwd=ROOT, env=cli_env(), timeout=300, check=True)
    import json

    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["growth_fraction"] <= 0.10, data


@pytest.mark.slow
def test_sighup_makes_the_server_look_at_current(tmp_path):
    directory = IndexDirectory(tmp_path / "idx")
    import_vectors(directory, clustered(50, DIM), keys(50), precomputed_identity(DIM), OPTIONS)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", str(directory.path), "--port", str(port),
         "--device", "cpu", "--follow-seconds", "0"], cwd=ROOT, env=cli_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_serving(port, proc)
        directory.republish(directory.manifest(), refine_factor=2)
        with SearchClient(f"127.0.0.1:{port}", timeout=10) as client:
            time.sleep(0.5)
            assert client.info()["index_version"] == 1  # not polling
            proc.send_signal(signal.SIGHUP)
            _wait_for_version(client, 2, 5.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
