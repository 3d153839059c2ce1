"""The catalog on its own: ids, retired files, shards, failures and runs in real SQLite."""

from __future__ import annotations

import os
import sqlite3

import pytest

from index.store.catalog import SCHEMA, Catalog, CatalogError, ImageRecord, Shard


def record(path: str, sha: str, size: int = 10) -> ImageRecord:
    return ImageRecord(path, size, 1_000, sha)


def test_shard_rows_get_consecutive_ids_and_are_found_by_path(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite")
    run = catalog.start_run()
    catalog.add_shard(Shard(0, "shard-000000.npy", 0, 2), [record("/a", "x"), record("/b", "y")],
                      run)
    rows = catalog.live_by_path(["/a", "/b", "/missing"])
    assert {p: r.id for p, r in rows.items()} == {"/a": 0, "/b": 1}
    assert rows["/b"].sha256 == "y" and catalog.next_id() == 2
    assert catalog.id_with_hash("y") == 1 and catalog.id_with_hash("z") is None
    assert catalog.paths([0, 1]) == {0: "/a", 1: "/b"}
    assert catalog.live_ids().tolist() == [0, 1]


def test_new_bytes_at_a_known_path_retire_the_old_id(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite")
    first = catalog.start_run()
    catalog.add_shard(Shard(0, "s0", 0, 1), [record("/a", "old")], first)
    second = catalog.start_run()
    catalog.add_shard(Shard(1, "s1", 1, 1), [record("/a", "new")], second)
    assert catalog.live_by_path(["/a"])["/a"].id == 1
    assert catalog.live_ids().tolist() == [1]
    assert catalog.deleted_since(first).tolist() == [0]
    assert catalog.deleted_since(second).tolist() == []
    assert catalog.counts() == {"live": 1, "stored": 2, "failed": 0}


def test_a_shard_must_match_its_rows(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite")
    with pytest.raises(CatalogError, match="2 vectors, 1 images"):
        catalog.add_shard(Shard(0, "s0", 0, 2), [record("/a", "x")], catalog.start_run())
    assert catalog.shards() == [] and catalog.next_id() == 0  # nothing half-written


def test_failures_are_recorded_and_cleared_by_success(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite")
    run = catalog.start_run()
    catalog.record_failures([("/a", "broken"), ("/b", "too large")], run)
    assert catalog.failures() == [("/a", "broken"), ("/b", "too large")]
    catalog.add_shard(Shard(0, "s0", 0, 1), [record("/a", "x")], run)
    assert catalog.failures() == [("/b", "too large")]


def test_touch_keeps_the_id_and_moves_size_and_mtime(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite")
    catalog.add_shard(Shard(0, "s0", 0, 1), [record("/a", "x")], catalog.start_run())
    catalog.touch(0, 99, 5_000)
    row = catalog.live_by_path(["/a"])["/a"]
    assert (row.id, row.size, row.mtime_ns) == (0, 99, 5_000)


def test_runs_record_their_outcome(tmp_path):
    path = tmp_path / "catalog.sqlite"
    catalog = Catalog(path)
    run = catalog.start_run()
    catalog.finish_run(run, "done", embedded=3, reused=1, failed=2)
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT status, embedded, reused, failed FROM runs WHERE id = ?",
                           (run,)).fetchone()
    assert row == ("done", 3, 1, 2)


def test_readonly_needs_an_existing_catalog_and_a_known_schema(tmp_path):
    with pytest.raises(CatalogError, match="no catalog"):
        Catalog(tmp_path / "none.sqlite", readonly=True)
    path = tmp_path / "catalog.sqlite"
    Catalog(path).set_meta("schema_version", "99")
    with pytest.raises(CatalogError, match="newer than this program"):
        Catalog(path, readonly=True)


def test_a_reader_sees_what_a_writer_committed(tmp_path):
    path = tmp_path / "catalog.sqlite"
    writer = Catalog(path)
    reader = Catalog(path, readonly=True)
    assert reader.counts()["live"] == 0
    writer.add_shard(Shard(0, "s0", 0, 1), [record("/a", "x")], writer.start_run())
    assert reader.counts()["live"] == 1


def test_a_path_that_is_not_utf8_is_stored_exactly_and_raises_the_schema(tmp_path):
    path = tmp_path / "catalog.sqlite"
    catalog = Catalog(path)
    odd = os.fsdecode(b"/p/caf\xe9.jpg")
    run = catalog.start_run()
    catalog.add_shard(Shard(0, "s0", 0, 1), [record("/p/plain.jpg", "x")], run)
    assert catalog.get_meta("schema_version") == "1"  # older programs still read it
    catalog.add_shard(Shard(1, "s1", 1, 1), [record(odd, "y")], run)
    catalog.record_failures([(os.fsdecode(b"/p/bad\xff.jpg"), "broken")], run)
    assert catalog.get_meta("schema_version") == "2"
    reader = Catalog(path, readonly=True)
    assert reader.paths([0, 1]) == {0: "/p/plain.jpg", 1: odd}
    assert reader.live_by_path([odd])[odd].id == 1
    assert reader.failures() == [(os.fsdecode(b"/p/bad\xff.jpg"), "broken")]
    with sqlite3.connect(path) as conn:
        stored = dict(conn.execute("SELECT id, path FROM images"))
    assert stored == {0: "/p/plain.jpg", 1: b"/p/caf\xe9.jpg"}


def test_a_schema_1_catalog_reads_and_updates_unchanged(tmp_path):
    path = tmp_path / "catalog.sqlite"
    with sqlite3.connect(path) as conn:  # as the first release wrote it
        conn.executescript(SCHEMA)
        conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        conn.execute("INSERT INTO images (id, path, size, mtime_ns, sha256, run_id) "
                     "VALUES (0, '/p/café.jpg', 10, 1000, 'x', 1)")
    catalog = Catalog(path)
    assert catalog.live_by_path(["/p/café.jpg"])["/p/café.jpg"].id == 0
    catalog.add_shard(Shard(0, "s1", 1, 1), [record("/p/café.jpg", "y")], catalog.start_run())
    assert catalog.live_ids().tolist() == [1] and catalog.get_meta("schema_version") == "1"
