"""Upserted metadata is stored with the sidecar's types, so filters work on upserted items:
a real --writable server, the Python client, and `visearch upsert --metadata`."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import datetime, timezone

import grpc
import pytest

from index.store import metadata
from index.store.directory import IndexDirectory
from index.store.upsert_fields import split_key, type_fields, wire_fields
from server.client import SearchClient
from tests.conftest import run_visearch
from tests.imagegen import picture
from tests.server.test_writer import DIM, start, synthetic_index
from tests.synthetic import clustered


def test_typing_rules_follow_the_sidecar():
    known = {"price": "float", "width": "integer"}
    typed, types = type_fields([
        {"price": "12", "stock": "3", "tags": '["red", "sale"]', "when": "2024-05-01",
         "width": "640", "on": "true", "note": "007"},
        {"price": "99.5", "stock": "4", "tags": '["blue"]', "when": "2024-06-01T10:00:00Z",
         "width": "10", "on": "false", "note": "abc"},
        {"price": "cheap"},
        {"folder": "x"},
        {"price:integer": "3"},
        {"labels:list": "a|b"},
    ], known)
    assert types == {"price": "float", "stock": "integer", "tags": "list",
                     "when": "timestamp", "width": "integer", "on": "boolean",
                     "note": "string", "labels": "list"}
    assert typed[0] == {"price": "12.0", "stock": "3", "tags": '["red", "sale"]',
                        "when": "2024-05-01T00:00:00+00:00", "width": "640", "on": "true",
                        "note": "007"}
    assert "'cheap' is not a float" in str(typed[2])
    assert "automatic" in str(typed[3])
    assert "is float in this index, not integer" in str(typed[4])
    assert typed[5] == {"labels": '["a", "b"]'}
    assert split_key("ratio:x") == ("ratio:x", None) and split_key("a:float") == ("a", "float")
    when = datetime(2024, 1, 2, 3, 4, 5)
    assert wire_fields({"n": 5, "f": 0.5, "b": False, "t": when, "l": ["x"], "s": "5"}) == {
        "n:integer": "5", "f:float": "0.5", "b:boolean": "false",
        "t:timestamp": "2024-01-02T03:04:05+00:00", "l:list": '["x"]', "s": "5"}


def test_upserted_fields_filter_like_built_ones_and_survive_a_restart(tmp_path):
    directory = synthetic_index(tmp_path / "idx")
    catalog = directory.catalog()
    metadata.write_fields(catalog, [(i, {"price": float(i)}) for i in range(200)],
                          {"price": "float"})  # as `visearch build --metadata` leaves it
    catalog.close()
    vectors = clustered(4, DIM, seed=9)
    server = start(directory, writable=True, publish_every=10_000, publish_seconds=3600)
    try:
        with SearchClient(f"127.0.0.1:{server.port}", timeout=30) as client:
            done = client.upsert_vectors(["a", "b", "c", "d"], vectors, metadata=[
                {"price": "50", "tags": '["red", "sale"]', "stock": 5,
                 "added": datetime(2024, 3, 1, tzinfo=timezone.utc), "new": True},
                {"price": "250.5", "tags:list": "blue", "stock": 1,
                 "added": "2023-12-31", "new": False},
                {"price": 7.25, "stock": 2},
                {}])
            assert all(d.error is None for d in done)
            ids = {d.key: d.id for d in done}

            def matching(expr: str) -> set[int]:
                found = set()
                for vector in vectors:
                    hits = client.search_vector(vector, k=50, filter=expr).hits
                    found |= {h.id for h in hits if h.id >= 200}
                return found

            assert matching("price < 100") == {ids["a"], ids["c"]}
            assert matching("price >= 250") == {ids["b"]}
            assert matching('tags contains "red"') == {ids["a"]}
            assert matching("stock > 1 and new = true") == {ids["a"]}
            assert matching('added >= "2024-01-01"') == {ids["a"]}
            shown = client.search_vector(vectors[2], k=1, fields=["price", "stock"]).hits[0]
            assert (shown.id, shown.fields) == (ids["c"], {"price": "7.25", "stock": "2"})
            for bad, message in (({"price": "cheap"}, "'cheap' is not a float"),
                                 ({"stock:string": "x"}, "is integer in this index"),
                                 ({"folder": "x"}, "automatic")):
                with pytest.raises(grpc.RpcError) as info:
                    client.upsert_vectors(["bad"], vectors[:1], metadata=[bad])
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert message in info.value.details()
            partial = client.upsert_vectors(["ok", "bad"], vectors[:2], allow_partial=True,
                                            metadata=[{"stock": "9"}, {"stock": "nine"}])
            assert partial[0].error is None and partial[1].error.code == "INVALID_ARGUMENT"
    finally:
        server.stop(grace=1)
    with sqlite3.connect(directory.catalog_path) as db:
        assert dict(db.execute("SELECT key, type FROM metadata_fields")) == {
            "price": "float", "tags": "list", "stock": "integer", "added": "timestamp",
            "new": "boolean"}
    server = start(directory, writable=True)  # the types were stored, not remembered
    try:
        with SearchClient(f"127.0.0.1:{server.port}", timeout=30) as client:
            with pytest.raises(grpc.RpcError, match="'many' is not a integer"):
                client.upsert_vectors(["e"], vectors[:1], metadata=[{"stock": "many"}])
            hits = client.search_vector(vectors[0], k=300, filter="stock >= 5").hits
            assert {h.id for h in hits} == {ids["a"], partial[0].id}
    finally:
        server.stop(grace=1)


def test_visearch_upsert_metadata_file(tmp_path, index_dir):
    """The untrained tiny model embeds the images; the CSV's declared and inferred types
    are kept."""
    shutil.copytree(index_dir, tmp_path / "idx")
    server = start(IndexDirectory(tmp_path / "idx"), writable=True)
    try:
        images = []
        for n in range(2):
            images.append(tmp_path / f"new{n}.png")
            picture(5000 + n).save(images[-1])
        sidecar = tmp_path / "meta.csv"
        sidecar.write_text("path,price,sku:string,tags:list\n"
                           f"{images[0]},19.5,0042,red|sale\n{images[1]},120,0043,blue\n"
                           f"{tmp_path / 'other.png'},1,1,x\n")
        target = f"127.0.0.1:{server.port}"
        done = run_visearch("upsert", "--server", target, "--metadata", str(sidecar),
                            *map(str, images), check=True)
        assert "upserted 2 images, failed 0" in done.stdout
        assert "1 rows name no image given to upsert" in done.stderr
        with SearchClient(target, timeout=30) as client:
            hits = client.search_image(images[0], k=100, filter='price < 100',
                                       fields=["price", "sku", "tags"]).hits
            mine = [h for h in hits if h.path == str(images[0].resolve())]
            assert mine and mine[0].fields == {"price": "19.5", "sku": "0042",
                                               "tags": '["red", "sale"]'}
            assert not [h for h in hits if h.path == str(images[1].resolve())]
    finally:
        server.stop(grace=1)
