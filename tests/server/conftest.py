"""A real gRPC server on 127.0.0.1 over a real index built with the untrained tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from embedder import DecodeLimits, EmbedderConfig
from index.build.pipeline import BuildConfig, run_build
from index.build.publish import IndexingOptions
from server.app import SearchServer
from server.client import SearchClient
from server.config import ServerConfig, ServiceConfig
from tests.imagegen import write_pictures

SERVER_MAX_PIXELS = 1_000_000


@contextmanager
def serving(config: ServerConfig) -> Iterator[SearchServer]:
    """A started and loaded server on 127.0.0.1, stopped on exit."""
    running = SearchServer(config)
    running.start()
    running.load()
    try:
        yield running
    finally:
        running.stop(grace=1)


@pytest.fixture(scope="package")
def corpus(tmp_path_factory) -> list[Path]:
    return write_pictures(tmp_path_factory.mktemp("corpus"), 40)


@pytest.fixture(scope="package")
def index_dir(tmp_path_factory, corpus, tiny_embedder) -> Path:
    out = tmp_path_factory.mktemp("served") / "idx"
    run_build(BuildConfig(inputs=(str(corpus[0].parent),), out=out,
                          embedder=EmbedderConfig(model="tiny", device="cpu"), workers=0,
                          indexing=IndexingOptions(progress=False)), embedder=tiny_embedder)
    return out


@pytest.fixture(scope="package")
def server(index_dir):
    config = ServerConfig(index_dir=index_dir, port=0, device="cpu", drain_seconds=0.0,
                          service=ServiceConfig(limits=DecodeLimits(max_pixels=SERVER_MAX_PIXELS)))
    with serving(config) as running:
        yield running


@pytest.fixture()
def client(server):
    with SearchClient(f"127.0.0.1:{server.port}", timeout=30) as c:
        yield c


@pytest.fixture(scope="package")
def ivf_server(ivf_template):
    """The synthetic IVF index (precomputed vectors, no model) behind a real server."""
    with serving(ServerConfig(index_dir=ivf_template.path, port=0, device="cpu",
                              drain_seconds=0.0)) as running:
        yield running
