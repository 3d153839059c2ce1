"""Inputs found in the wild: names that are not UTF-8, special files, unreadable folders.

Each is one file's (or folder's) failure with its reason, or it indexes; none may
stop, hang or balloon a build. Real files, real builds with the untrained tiny model.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from embedder import EmbedderConfig
from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.build.pipeline import BuildConfig, run_build
from index.build.publish import IndexingOptions
from index.build.sources import list_images
from tests.conftest import cli_env, run_visearch

TINY = EmbedderConfig(model="tiny", device="cpu")
LATIN1_NAME = b"caf\xe9.jpg"  # 'café' as old archives and unzipped Windows folders write it


def build(inputs, out, embedder, **kwargs):
    config = BuildConfig(inputs=tuple(str(p) for p in inputs), out=Path(out), embedder=TINY,
                         workers=0, indexing=IndexingOptions(progress=False), **kwargs)
    return run_build(config, embedder=embedder)


def copy_as(source: Path, folder: Path, raw_name: bytes) -> str:
    """Copy ``source`` to a file named by raw bytes; the path as Python names it."""
    target = os.path.join(os.fsencode(folder), raw_name)
    shutil.copy(source, target)
    return os.fsdecode(target)


def test_a_name_that_is_not_utf8_indexes_and_is_found(tmp_path, photos, tiny_embedder):
    folder = tmp_path / "archive"
    folder.mkdir()
    for p in photos[:3]:
        shutil.copy(p, folder / p.name)
    odd = copy_as(photos[3], folder, LATIN1_NAME)
    report = build([folder], tmp_path / "idx", tiny_embedder)
    assert report.ingest.embedded == 4 and not report.failed
    searcher = Searcher(tmp_path / "idx")
    odd_id = searcher.catalog.ids_for_paths([odd])[odd]
    hits = searcher.search(searcher.store.get(np.array([odd_id])), SearchParams(k=1))
    assert searcher.paths(hits.ids[:, 0]) == {odd_id: odd}
    again = build([folder], tmp_path / "idx", tiny_embedder)  # known: skipped unread
    assert again.skipped == 4 and again.ingest.embedded == 0
    listed = tmp_path / "list.txt"
    listed.write_bytes(os.fsencode(odd) + b"\n")
    assert [f.path for f in list_images([f"@{listed}"]).files] == [odd]


@pytest.mark.slow
def test_hostile_folder_through_the_cli(tmp_path, photos):
    folder = tmp_path / "hostile"
    folder.mkdir()
    for p in photos[:3]:
        shutil.copy(p, folder / p.name)
    odd = copy_as(photos[3], folder, LATIN1_NAME)
    broken = os.path.join(os.fsencode(folder), b"bad\xff.jpg")
    Path(os.fsdecode(broken)).write_bytes(b"not a picture")
    env = cli_env() | {"LC_ALL": "C", "LANG": "C"}  # printing must not depend on the locale
    report_file = tmp_path / "report.json"
    result = run_visearch("build", str(folder), "--out", str(tmp_path / "idx"), "--model",
                          "tiny", "--workers", "0", "--quiet", "--report", str(report_file),
                          env=env)
    assert result.returncode == 0, result.stderr
    failed = sorted(ln for ln in result.stderr.splitlines() if ln.startswith("failed: "))
    assert failed == [f"failed: {folder}/bad\\xff.jpg: not an image, or a format Pillow "
                      f"cannot read"]
    report = json.loads(report_file.read_text())
    assert report["embedded"] == 4
    assert report["failed"] == [{
        "path": f"{folder}/bad\\xff.jpg", "reason": "not an image, or a format Pillow cannot read",
        "path_base64": base64.b64encode(broken).decode()}]
    searcher = Searcher(tmp_path / "idx")
    assert odd in set(searcher.paths(searcher.catalog.live_ids()).values())
