"""delete, build --prune and sync on real generated images; delete on a trained IVF index."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest

from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.build.retire import NothingMatchedError, delete_images
from index.store.directory import IndexDirectory
from tests.conftest import run_visearch
from tests.index.build.test_build import build


@pytest.fixture()
def corpus(tmp_path, photos):
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photos[:30]:
        shutil.copy2(p, folder / p.name)
    return sorted(folder.iterdir())


def _ids_by_path(idx) -> dict[str, int]:
    searcher = Searcher(idx)
    return {p: i for i, p in searcher.paths(searcher.held_ids()).items()}


def _never_returned(idx, ids: list[int]) -> None:
    """Searching with the deleted images' own vectors never returns them."""
    searcher = Searcher(idx)
    assert not set(ids) & set(searcher.held_ids().tolist())
    hits = searcher.search(searcher.store.get(np.array(ids)), SearchParams(k=10))
    assert not set(ids) & set(hits.ids.reshape(-1).tolist())


def test_delete_paths_and_ids_never_returned_ids_stable(tmp_path, corpus, tiny_embedder):
    idx = tmp_path / "idx"
    build([corpus[0].parent], idx, tiny_embedder)
    before = _ids_by_path(idx)
    gone_paths = [str(p) for p in corpus[:3]]
    gone_id = before[str(corpus[3])]
    report = delete_images(IndexDirectory(idx), [*gone_paths, "/no/such.jpg"], [gone_id, 99999])
    assert sorted(i for i, _ in report.removed) == sorted([before[p] for p in gone_paths] +
                                                          [gone_id])
    assert report.unknown == ["/no/such.jpg", "id 99999"]
    assert report.indexing.manifest.live_count == 26
    after = _ids_by_path(idx)
    removed = {i for i, _ in report.removed}
    assert after == {p: i for p, i in before.items() if i not in removed}  # ids stable
    _never_returned(idx, [before[p] for p in gone_paths] + [gone_id])
    with sqlite3.connect(idx / "catalog.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM images WHERE deleted = 1").fetchone()[0] == 4
    with pytest.raises(NothingMatchedError):  # already gone: nothing matches, nothing published
        delete_images(IndexDirectory(idx), gone_paths)
    # The file comes back: a new id (ids are never reused), same vector.
    report2 = build([corpus[0].parent], idx, tiny_embedder)
    assert report2.ingest.stored == 4
    readded = _ids_by_path(idx)
    assert all(readded[p] > max(before.values()) for p in gone_paths)


def test_delete_cli_directory_list_and_exit_status(tmp_path, corpus, tiny_embedder):
    idx = tmp_path / "idx"
    build([corpus[0].parent], idx, tiny_embedder)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two\n{corpus[0]}\n{corpus[1]}\n")
    done = run_visearch("delete", str(idx), f"@{listing}", "/nope.png", check=True)
    assert "deleted 2 images, 1 unknown" in done.stdout and "unknown: /nope.png" in done.stderr
    none = run_visearch("delete", str(idx), "/nope.png")
    assert none.returncode == 1 and "nothing to delete" in none.stderr
    everything = run_visearch("delete", str(idx), "--id", "5", check=True)
    assert "deleted 1 images" in everything.stdout
    assert Searcher(idx).ntotal == 27


def test_build_reports_missing_files_and_prune_removes_them(tmp_path, corpus, tiny_embedder):
    idx = tmp_path / "idx"
    build([corpus[0].parent], idx, tiny_embedder)
    before = _ids_by_path(idx)
    for p in corpus[:5]:
        p.unlink()
    kept = build([corpus[0].parent], idx, tiny_embedder)
    assert kept.missing_on_disk == 5 and kept.pruned == 0
    assert "5 indexed files are missing on disk" in kept.summary()
    assert Searcher(idx).ntotal == 30  # without --prune nothing is removed (as documented)
    pruned = build([corpus[0].parent], idx, tiny_embedder, prune=True)
    assert pruned.pruned == 5 and "removed 5 vanished files" in pruned.summary()
    assert Searcher(idx).ntotal == 25
    _never_returned(idx, [before[str(p)] for p in corpus[:5]])


def test_sync_adds_reembeds_and_removes_under_the_given_roots(tmp_path, corpus, photos):
    idx = tmp_path / "idx"
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy2(photos[100], other / "elsewhere.png")
    run_visearch("build", str(corpus[0].parent), str(other), "--out", str(idx), "--model",
                 "tiny", "--device", "cpu", "--workers", "0", "--quiet", check=True)
    before = _ids_by_path(idx)
    corpus[0].unlink()
    (other / "elsewhere.png").unlink()  # not under the synced root: stays
    shutil.copy2(photos[60], corpus[1])  # changed bytes: re-embedded under a new id
    shutil.copy2(photos[61], corpus[0].parent / "new.png")
    report = tmp_path / "r.json"
    done = run_visearch("sync", str(idx), str(corpus[0].parent), "--workers", "0", "--quiet",
                        "--device", "cpu", "--report", str(report), check=True)
    data = json.loads(report.read_text())
    assert data["pruned"] == 1 and data["embedded"] == 2, done.stdout
    after = _ids_by_path(idx)
    assert str(corpus[0]) not in after and str(other / "elsewhere.png") in after
    assert after[str(corpus[1])] > before[str(corpus[1])]
    assert str(corpus[0].parent / "new.png") in after
    _never_returned(idx, [before[str(corpus[0])], before[str(corpus[1])]])


def test_eval_ignores_deleted_rows(tmp_path, corpus, tiny_embedder):
    idx = tmp_path / "idx"
    build([corpus[0].parent], idx, tiny_embedder)
    delete_images(IndexDirectory(idx), [str(p) for p in corpus[:10]])
    out = tmp_path / "eval.json"
    run_visearch("eval", str(idx), "--json", str(out), "--single-queries", "5", check=True)
    data = json.loads(out.read_text())
    assert data["num_queries"] == 20 and data["vectors"] == 20
    assert all(r["k_recall"]["1"] == 1.0 for r in data["results"])


def test_delete_on_ivf_removes_ids_without_retraining(ivf_copy):
    first = ivf_copy.manifest()
    victims = list(range(0, 20_000, 400))
    report = delete_images(ivf_copy, ids=victims)
    m = report.indexing.manifest
    assert m.index.spec == first.index.spec and not m.build["retrained"]
    assert m.live_count == 20_000 - len(victims)
    searcher = Searcher(ivf_copy.path)
    hits = searcher.search(searcher.store.get(np.array(victims)),
                           SearchParams(k=10, nprobe=first.index.nlist))
    assert not set(victims) & set(hits.ids.reshape(-1).tolist())
