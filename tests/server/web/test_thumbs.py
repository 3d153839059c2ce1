"""Thumbnails through the web: placeholders for images over the decode limit, a bounded
disk cache, and only catalog ids (there is no path parameter to abuse)."""

from __future__ import annotations

import io
from contextlib import contextmanager

from PIL import Image

from embedder import DecodeLimits
from server.app import SearchServer
from server.config import ServerConfig, ServiceConfig
from server.web.placeholder import placeholder_jpeg
from tests.server.web.conftest import app_for, close


@contextmanager
def thumb_server(index_dir, **config):
    server = SearchServer(ServerConfig(index_dir=index_dir, port=0, device="cpu",
                                       drain_seconds=0, **config))
    server.start()
    server.load()
    http = app_for(f"127.0.0.1:{server.port}")
    try:
        yield http, server
    finally:
        close(http)
        server.stop(grace=0)


def test_image_over_the_decode_limit_gets_a_placeholder(index_dir):
    # The corpus pictures are 96x72 = 6912 pixels; this server accepts 1000.
    tight = ServiceConfig(limits=DecodeLimits(max_pixels=1000))
    with thumb_server(index_dir, service=tight) as (http, _server):
        response = http.get("/v1/thumb/0?size=64")
        assert response.status_code == 200
        assert response.content == placeholder_jpeg(64)
        assert "exceeds the limit" in response.headers["x-visearch-error"]
        assert response.headers["cache-control"] == "no-store"
        assert http.get("/readyz").status_code == 200  # and the server lives on


def test_deleted_file_gets_a_placeholder_not_a_crash(tmp_path, corpus, tiny_embedder):
    from embedder import EmbedderConfig
    from index.build.pipeline import BuildConfig, run_build
    from index.build.publish import IndexingOptions

    folder = tmp_path / "pics"
    folder.mkdir()
    for path in corpus[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    run_build(BuildConfig(inputs=(str(folder),), out=tmp_path / "idx",
                          embedder=EmbedderConfig(model="tiny", device="cpu"), workers=0,
                          indexing=IndexingOptions(progress=False)), embedder=tiny_embedder)
    for path in folder.iterdir():
        path.unlink()
    with thumb_server(tmp_path / "idx") as (http, _server):
        response = http.get("/v1/thumb/0")
        assert response.status_code == 200 and "cannot read" in \
            response.headers["x-visearch-error"]


def test_disk_cache_is_used_and_bounded(index_dir, tmp_path):
    cache = tmp_path / "thumbs"
    bound = 8_000
    with thumb_server(index_dir, thumb_cache_dir=cache, thumb_cache_bytes=bound) as (http, _):
        first = http.get("/v1/thumb/3?size=128")
        assert first.status_code == 200 and len(list(cache.glob("*-128.jpg"))) == 1
        assert http.get("/v1/thumb/3?size=128").content == first.content
        for image_id in range(40):
            assert http.get(f"/v1/thumb/{image_id}?size=128").status_code == 200
        assert sum(p.stat().st_size for p in cache.glob("*.jpg")) <= bound
        assert Image.open(io.BytesIO(first.content)).format == "JPEG"
