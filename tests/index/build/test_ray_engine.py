"""The Ray engine on a local 2-CPU Ray (loopback only) against the local engine, with the
untrained tiny model and generated images: same ids, equal vectors, exactly-once after a
worker dies mid-run."""

from __future__ import annotations

import numpy as np
import pytest

from embedder import EmbedderConfig
from index.build.pipeline import BuildConfig, run_build
from index.build.publish import IndexingOptions
from index.build.ray_engine import RayOptions, ray_stages
from index.store.directory import IndexDirectory
from tests.imagegen import write_pictures

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    write_pictures(folder, 48)
    (folder / "broken.jpg").write_bytes(b"not an image")
    return folder


def config(corpus, out) -> BuildConfig:
    return BuildConfig(inputs=(str(corpus),), out=out, batch_size=16, workers=0,
                       embedder=EmbedderConfig(model="tiny", device="cpu"),
                       indexing=IndexingOptions(progress=False))


def contents(out) -> tuple[dict[str, int], np.ndarray]:
    directory = IndexDirectory(out)
    catalog = directory.catalog(readonly=True)
    rows = catalog.live_rows()
    store = directory.vector_store(catalog, directory.manifest().dim)
    vectors = store.get(np.array([i for i, _ in rows]))
    catalog.close()
    return {path: i for i, path in rows}, vectors


@pytest.fixture(scope="module")
def local_build(corpus, tiny_embedder, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "idx"
    report = run_build(config(corpus, out), embedder=tiny_embedder)  # untrained tiny model
    assert report.ingest.embedded == 48 and len(report.failed) == 1
    return contents(out)


def test_ray_build_equals_the_local_build(local_ray, corpus, local_build, tmp_path):
    cfg = config(corpus, tmp_path / "idx")
    report = run_build(cfg, stages=ray_stages(cfg, RayOptions(workers=1, batch_size=16)))
    assert report.ingest.embedded == 48
    assert [p for p, _ in report.failed] == [str(corpus / "broken.jpg")]
    ids, vectors = contents(tmp_path / "idx")
    assert ids == local_build[0]
    np.testing.assert_allclose(vectors, local_build[1], atol=1e-5)
    again = run_build(cfg, stages=ray_stages(cfg, RayOptions(workers=1)))  # incremental
    assert again.ingest.embedded == 0 and again.skipped == 48


def test_a_worker_killed_mid_run_is_retried_and_written_once(local_ray, corpus, local_build,
                                                            tmp_path):
    marker = tmp_path / "crash-once"
    marker.touch()
    cfg = config(corpus, tmp_path / "idx")
    options = RayOptions(workers=1, batch_size=16, crash_once=marker)
    report = run_build(cfg, stages=ray_stages(cfg, options))
    assert not marker.exists()  # a decode task claimed it and its worker exited
    assert report.ingest.embedded == 48
    ids, vectors = contents(tmp_path / "idx")
    assert ids == local_build[0] and sorted(ids.values()) == list(range(48))
    np.testing.assert_allclose(vectors, local_build[1], atol=1e-5)
