"""Search by a stored id ("more like this") and thumbnails by id, over a real gRPC server."""

from __future__ import annotations

import io

import grpc
import pytest
from PIL import Image

from server.thumbs import ThumbnailCache


def test_like_id_finds_neighbours_but_not_itself(client, corpus):
    first = client.search_image(corpus[3], k=5).hits[0]
    like = client.search_like(first.id, k=5)
    assert len(like.hits) == 5
    assert first.id not in [h.id for h in like.hits]
    by_vector = client.search_image(corpus[3], k=6).hits
    assert [h.id for h in like.hits] == [h.id for h in by_vector if h.id != first.id][:5]


@pytest.mark.parametrize("like_id", [-1, 10_000])
def test_like_id_unknown_is_not_found(client, like_id):
    with pytest.raises(grpc.RpcError) as info:
        client.search_like(like_id)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_like_id_and_text_together_is_invalid(client):
    from visearch.v1 import search_pb2

    with pytest.raises(grpc.RpcError) as info:
        client.search(search_pb2.SearchRequest(like_id=0, text="x", k=3))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_thumbnail_of_an_indexed_image(client, corpus):
    hit = client.search_image(corpus[0], k=1).hits[0]
    jpeg, path = client.thumbnail(hit.id, 32)
    image = Image.open(io.BytesIO(jpeg))
    assert image.format == "JPEG" and max(image.size) == 32
    assert path == hit.path


@pytest.mark.parametrize("image_id,size,code", [
    (10_000, 64, grpc.StatusCode.NOT_FOUND),
    (-5, 64, grpc.StatusCode.NOT_FOUND),
    (0, 5000, grpc.StatusCode.INVALID_ARGUMENT),
])
def test_thumbnail_bad_requests(client, image_id, size, code):
    with pytest.raises(grpc.RpcError) as info:
        client.thumbnail(image_id, size)
    assert info.value.code() == code


def test_cache_stays_under_its_bound(tmp_path):
    cache = ThumbnailCache(tmp_path, max_bytes=10_000)
    for i in range(30):
        cache.put(f"{i:064x}", 64, b"x" * 1000)
    files = list(tmp_path.glob("*.jpg"))
    assert sum(p.stat().st_size for p in files) <= 10_000
    assert cache.get(f"{29:064x}", 64) == b"x" * 1000  # the newest survive
    assert cache.get(f"{0:064x}", 64) is None


def test_cache_refuses_names_that_are_not_hashes(tmp_path):
    cache = ThumbnailCache(tmp_path / "c")
    cache.put("../escape", 64, b"x")
    assert not list(tmp_path.rglob("*.jpg"))
