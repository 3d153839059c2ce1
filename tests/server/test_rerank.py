"""Re-ranking over a real gRPC server and a real build (untrained tiny model): automatic and
EXIF metadata, CSV and JSON Lines sidecars, filters, like_key, min_score, collapse of exact
and near copies, pages, and a server that keeps answering after bad filters."""

from __future__ import annotations

import json
import shutil
from datetime import datetime

import grpc
import pytest
from PIL import Image

from embedder import EmbedderConfig
from index.build.pipeline import BuildConfig, run_build
from index.build.publish import IndexingOptions
from server.app import SearchServer
from server.client import SearchClient
from server.config import ServerConfig
from tests.imagegen import write_pictures


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_embedder):
    root = tmp_path_factory.mktemp("rr")
    shoes = write_pictures(root / "photos" / "shoes", 12)
    bags = write_pictures(root / "photos" / "bags", 12, start=50)
    shutil.copy(shoes[0], root / "photos" / "bags" / "copy.png")  # an exact copy
    near = Image.open(shoes[1]).convert("RGB")
    near.save(root / "photos" / "bags" / "near.jpg", quality=92)  # a near copy
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Acme", "Snap 1"
    exif.get_ifd(0x8769)[0x9003] = "2024:05:06 07:08:09"
    Image.open(shoes[2]).convert("RGB").save(root / "photos" / "shoes" / "exif.jpg",
                                             exif=exif)
    sidecar = root / "meta.csv"
    rows = ["path,price:float,tags:list,sale"]
    rows += [f"{p},{10 * i},{'red|small' if i % 2 else 'blue'},{str(i < 4).lower()}"
             for i, p in enumerate(shoes)]
    rows.append(f"{root}/nowhere.png,1,red,true")
    sidecar.write_text("\n".join(rows) + "\n")
    out = root / "idx"
    report = run_build(BuildConfig(
        inputs=(str(root / "photos"),), out=out, metadata=sidecar, workers=0,
        embedder=EmbedderConfig(model="tiny", device="cpu"),
        indexing=IndexingOptions(progress=False)), embedder=tiny_embedder)
    assert report.metadata is not None and report.metadata.updated == 12
    assert report.metadata.unknown_paths == [f"{root}/nowhere.png"]
    # JSON Lines on the existing index: fields only, nothing embedded again.
    jsonl = root / "more.jsonl"
    jsonl.write_text("\n".join(json.dumps({"path": str(p), "brand": "b" + str(i % 3)})
                               for i, p in enumerate(bags)) + "\n")
    again = run_build(BuildConfig(
        inputs=(str(root / "photos"),), out=out, metadata=jsonl, workers=0,
        embedder=EmbedderConfig(model="tiny", device="cpu"),
        indexing=IndexingOptions(progress=False)), embedder=tiny_embedder)
    assert again.ingest.embedded == 0 and again.metadata.updated == 12
    return root, shoes, bags, out


@pytest.fixture(scope="module")
def client(built):
    server = SearchServer(ServerConfig(index_dir=built[3], port=0, device="cpu",
                                       drain_seconds=0.0))
    server.start()
    server.load()
    with SearchClient(f"127.0.0.1:{server.port}", timeout=30) as c:
        yield c
    server.stop(grace=1)


def shown(built, i: int) -> str:
    return f"shoes/{built[1][i].name}"


def test_automatic_and_exif_fields(client):
    hits = client.search_text("a photo", k=40, fields=["folder", "ext", "width", "height",
                                                        "bytes", "camera", "taken_at"]).hits
    by_path = {h.path: h.fields for h in hits}
    exif = by_path["shoes/exif.jpg"]
    assert exif["folder"] == "shoes" and exif["ext"] == "jpg"
    assert exif["camera"] == "Acme Snap 1"
    assert datetime.fromisoformat(exif["taken_at"]).replace(tzinfo=None) == \
        datetime(2024, 5, 6, 7, 8, 9)
    assert int(exif["width"]) == 96 and int(exif["height"]) == 72 and int(exif["bytes"]) > 0
    assert "camera" not in by_path["bags/copy.png"]


def test_filters_from_csv_and_jsonl(client, built):
    result = client.search_text("x", k=40, filter='folder = "shoes" and price < 50',
                                fields=["price", "tags"])
    assert {h.path for h in result.hits} == {shown(built, i) for i in range(5)}
    assert result.matched == 5 and result.strategy == "exact"
    red = client.search_text("x", k=40, filter='tags contains "red" and not sale = true')
    assert {h.path for h in red.hits} == {shown(built, i) for i in (5, 7, 9, 11)}
    brand = client.search_text("x", k=40, filter='brand in ["b0", "b1"]')
    assert len(brand.hits) == 8 and all(h.path.startswith("bags/") for h in brand.hits)


def test_filtered_top_k_is_the_exact_top_among_matches(client):
    full = client.search_text("x", k=40).hits
    shoes = [h.id for h in full if h.path.startswith("shoes/")]
    got = client.search_text("x", k=5, filter='folder = "shoes"').hits
    assert [h.id for h in got] == shoes[:5]


def test_like_key_exclude_and_min_score(client, built):
    plain = client.search_like(0, k=10).hits
    by_key = client.search_like(plain[0].path, k=9, include_self=False).hits
    assert plain[0].id not in [h.id for h in by_key]
    with_self = client.search_like(0, k=3, include_self=True).hits
    assert with_self[0].id == 0
    excluded = client.search_like(0, k=5, exclude_ids=[plain[0].id],
                                  exclude_keys=[plain[1].path]).hits
    assert [h.id for h in excluded] == [h.id for h in plain[2:7]]
    cut = plain[4].score
    above = client.search_like(0, k=10, min_score=cut).hits
    assert [h.id for h in above] == [h.id for h in plain if h.score >= cut]
    with pytest.raises(grpc.RpcError) as info:
        client.search_like("no/such.png")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_collapse_exact_and_near_copies(client, built):
    for original, copy in ((shown(built, 0), "bags/copy.png"),
                           (shown(built, 1), "bags/near.jpg")):
        plain = client.search_like(original, k=10, include_self=True).hits
        assert copy in [h.path for h in plain[:2]]
        collapsed = client.search_like(original, k=10, include_self=True, collapse=True).hits
        assert len(collapsed) == 10
        paths = [h.path for h in collapsed]
        assert (original in paths) != (copy in paths)  # one stands for both
        assert len(collapsed[0].collapsed_ids) >= 1


def test_pages_concatenate_to_the_unpaged_top(client):
    unpaged = client.search_text("x", k=24).hits
    pages, token = [], ""
    for _ in range(3):
        page = client.search_text("x", k=8, page_token=token)
        pages += page.hits
        token = page.next_page_token
        assert not page.version_changed
    assert [h.id for h in pages] == [h.id for h in unpaged]
    by_offset = client.search_text("x", k=8, offset=8).hits
    assert [h.id for h in by_offset] == [h.id for h in unpaged[8:16]]


@pytest.mark.parametrize("bad", ['price < "x"', "nope = 1", 'folder = "a', "price <",
                                 'folder = "a"; drop table images', "(" * 50])
def test_bad_filters_are_invalid_and_the_server_keeps_answering(client, bad):
    with pytest.raises(grpc.RpcError) as info:
        client.search_text("x", k=3, filter=bad)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "position" in info.value.details()
    assert len(client.search_text("x", k=3, filter='folder = "shoes"').hits) == 3


def test_search_batch_carries_options(client):
    from server.client import text_request

    results = client.search_batch([text_request("x", k=3, filter='folder = "bags"'),
                                   text_request("x", k=3, filter="nope = 1")])
    assert all(h.path.startswith("bags/") for h in results[0].hits)
    assert results[1].code == "INVALID_ARGUMENT"
