"""`visearch build` end to end on real image files with the untrained tiny model."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from embedder import EmbedderConfig
from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.build.pipeline import BuildConfig, run_build
from index.build.publish import IndexingOptions
from index.store.contract import ModelMismatchError
from tests.conftest import ROOT, cli_env, run_visearch
from tests.imagegen import write_bad_and_odd, write_pictures

TINY = EmbedderConfig(model="tiny", device="cpu")


def build(inputs, out, embedder, **kwargs):
    config = BuildConfig(inputs=tuple(str(p) for p in inputs), out=Path(out), embedder=TINY,
                         workers=kwargs.pop("workers", 0),
                         indexing=IndexingOptions(progress=False, **kwargs.pop("indexing", {})),
                         **kwargs)
    return run_build(config, embedder=embedder)


def test_build_indexes_every_image_and_each_finds_itself(tmp_path, photos, tiny_embedder):
    report = build([photos[0].parent], tmp_path / "idx", tiny_embedder, workers=2)
    assert report.ingest.embedded == len(photos) and not report.failed
    searcher = Searcher(tmp_path / "idx")
    assert searcher.ntotal == len(photos) and searcher.manifest.index.spec == "Flat"
    ids = searcher.catalog.live_ids()
    hits = searcher.search(searcher.store.get(ids), SearchParams(k=3))
    np.testing.assert_array_equal(hits.ids[:, 0], ids)
    paths = searcher.paths(ids)
    assert sorted(paths.values()) == sorted(str(p) for p in photos)


def test_stored_vectors_equal_fresh_embeddings(tmp_path, photos, tiny_embedder):
    from embedder.decode import decode_image

    build(photos[:10], tmp_path / "idx", tiny_embedder)
    searcher = Searcher(tmp_path / "idx")
    by_path = {v: k for k, v in searcher.paths(searcher.catalog.live_ids()).items()}
    for path in photos[:10]:
        image = decode_image(path.read_bytes(), draft_size=tiny_embedder.image_size)
        fresh = tiny_embedder.encode_pil([image])[0]
        stored = searcher.store.get(np.array([by_path[str(path)]]))[0]
        assert float(fresh @ stored) > 0.9999  # float16 storage


@pytest.mark.slow
def test_bad_files_are_reported_once_and_never_indexed(tmp_path):
    folder = tmp_path / "mixed"
    good = write_pictures(folder, 6)
    bad, odd = write_bad_and_odd(folder)
    (folder / "readme.txt").write_text("not an image extension: ignored")
    result = run_visearch("build", str(folder), "--out", str(tmp_path / "idx"), "--model",
                          "tiny", "--workers", "2", "--report", str(tmp_path / "report.json"))
    assert result.returncode == 0, result.stderr
    failed_lines = [ln for ln in result.stderr.splitlines() if ln.startswith("failed: ")]
    for path in bad.values():
        assert sum(f"failed: {path}:" in ln for ln in failed_lines) == 1, path
    assert len(failed_lines) == len(bad)
    assert all(len(ln.split(": ", 2)[2]) > 3 for ln in failed_lines)  # a reason each
    searcher = Searcher(tmp_path / "idx")
    indexed = set(searcher.paths(searcher.catalog.live_ids()).values())
    assert indexed == {str(p) for p in [*good, *odd.values()]}
    assert "UNTRAINED" in result.stdout and "failed 5" in result.stdout
    failures = dict(searcher.catalog.failures())
    assert set(failures) == {str(p) for p in bad.values()}


@pytest.mark.slow
def test_killed_build_resumes_without_embedding_twice(tmp_path, photos):
    out = tmp_path / "idx"
    args = [sys.executable, "-m", "cli.main", "build", str(photos[0].parent), "--out", str(out),
            "--model", "tiny", "--workers", "0", "--batch-size", "1", "--shard-size", "16",
            "--quiet"]
    proc = subprocess.Popen(args, cwd=ROOT, env=cli_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        stored = _wait_for_rows(out / "catalog.sqlite", at_least=32, proc=proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert stored < len(photos), "the build finished before it could be killed"
    stored = _count_rows(out / "catalog.sqlite")  # rows committed before the kill
    result = run_visearch("build", str(photos[0].parent), "--out", str(out), "--model", "tiny",
                          "--workers", "1", "--report", str(tmp_path / "r.json"), check=True)
    import json

    report = json.loads((tmp_path / "r.json").read_text())
    assert report["embedded"] == len(photos) - stored
    assert report["skipped"] == stored
    searcher = Searcher(out)
    ids = searcher.catalog.live_ids()
    assert len(ids) == len(photos) == searcher.ntotal
    assert len(set(searcher.paths(ids).values())) == len(photos)
    assert "indexed" in result.stdout


def test_incremental_build_embeds_only_new_images_and_keeps_ids(tmp_path, photos, tiny_embedder):
    out = tmp_path / "idx"
    first = build(photos[:50], out, tiny_embedder)
    searcher = Searcher(out)
    before = {p: i for i, p in searcher.paths(searcher.catalog.live_ids()).items()}
    more = write_pictures(tmp_path / "more", 30, start=1000)
    second = build([*photos[:50], more[0].parent], out, tiny_embedder)
    assert (first.ingest.embedded, second.ingest.embedded) == (50, 30)
    assert second.skipped == 50
    searcher = Searcher(out)
    after = {p: i for i, p in searcher.paths(searcher.catalog.live_ids()).items()}
    assert {p: after[p] for p in before} == before
    assert searcher.ntotal == 80 and searcher.manifest.version == 2


def test_changed_file_gets_a_new_id_and_copies_are_not_embedded(tmp_path, photos, tiny_embedder):
    folder = tmp_path / "p"
    folder.mkdir()
    for p in photos[:5]:
        shutil.copy(p, folder / p.name)
    out = tmp_path / "idx"
    build([folder], out, tiny_embedder)
    old_ids = Searcher(out).catalog.ids_for_paths([str(folder / photos[0].name)])
    shutil.copy(photos[10], folder / photos[0].name)  # same path, new content
    shutil.copy(photos[1], folder / "copy-of-1.png")  # new path, known content
    report = build([folder], out, tiny_embedder)
    assert (report.ingest.embedded, report.ingest.reused) == (1, 1)
    searcher = Searcher(out)
    new_ids = searcher.catalog.ids_for_paths([str(folder / photos[0].name)])
    assert new_ids != old_ids and searcher.ntotal == 6
    assert old_ids[str(folder / photos[0].name)] not in set(searcher.catalog.live_ids())


@pytest.mark.slow
def test_failed_build_keeps_previous_version_serving(tmp_path, photos, tiny_embedder):
    out = tmp_path / "idx"
    build(photos[:40], out, tiny_embedder)
    result = run_visearch("build", *map(str, photos[:60]), "--out", str(out), "--model", "tiny",
                          "--workers", "0", "--index-spec", "IVF4,PQ7")  # 7 does not divide 64
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "error" in result.stderr
    searcher = Searcher(out)
    assert searcher.manifest.version == 1 and searcher.ntotal == 40
    assert searcher.search(searcher.store.get(np.array([0])), SearchParams(k=1)).ids[0, 0] == 0
    report = build(photos[:60], out, tiny_embedder)  # the 20 embedded vectors are kept
    assert report.ingest.embedded == 0 and report.skipped == 60
    assert Searcher(out).ntotal == 60


def test_other_model_cannot_add_to_an_index(tmp_path, photos, tiny_embedder):
    import torch

    out = tmp_path / "idx"
    build(photos[:5], out, tiny_embedder)
    state = {k: v + 0.01 for k, v in tiny_embedder.model.state_dict().items()}
    torch.save(state, tmp_path / "other.pt")
    from embedder.embedder import load_embedder

    other = load_embedder(EmbedderConfig(model="tiny", checkpoint=str(tmp_path / "other.pt")))
    with pytest.raises(ModelMismatchError, match="same --model"):
        build(photos[5:8], out, other)


@pytest.mark.parametrize("args, message", [
    (["nothere"], "does not exist"),
    (["@missing-list.txt"], "does not exist"),
])
def test_bad_inputs_exit_nonzero_without_traceback(tmp_path, args, message):
    result = run_visearch("build", *args, "--out", str(tmp_path / "idx"), "--model", "tiny")
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_empty_corpus_and_unwritable_output(tmp_path, photos):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_visearch("build", str(empty), "--out", str(tmp_path / "idx"), "--model", "tiny")
    assert result.returncode == 1 and "no image files found" in result.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_visearch("build", str(photos[0]), "--out", str(blocker / "idx"), "--model",
                          "tiny")
    assert result.returncode == 1 and "cannot create --out" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_file_and_symlink_loop(tmp_path, photos, tiny_embedder):
    folder = tmp_path / "tree"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(photos[0], folder / "sub" / "a.png")
    os.symlink(folder, folder / "sub" / "loop")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# photos\n{photos[1]}\n{folder}\n{tmp_path / 'gone.jpg'}\n")
    report = build([f"@{listing}"], tmp_path / "idx", tiny_embedder)
    assert report.ingest.embedded == 2
    assert [p for p, _ in report.failed] == [str(tmp_path / "gone.jpg")]


def _count_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]


def _wait_for_rows(db: Path, at_least: int, proc: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                count = _count_rows(db)
            except sqlite3.OperationalError:
                count = 0
            if count >= at_least:
                return count
        time.sleep(0.02)
    raise AssertionError("the build stored nothing before the deadline")
