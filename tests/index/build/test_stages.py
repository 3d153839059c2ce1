"""The build pipeline driven through injected stages, as another runner would drive it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from embedder import EmbedderConfig
from index.ann.search import Searcher
from index.build.pipeline import BuildConfig, local_stages, run_build
from index.build.plan import decide
from index.build.publish import IndexingOptions
from index.build.sources import Listing, list_images
from index.store.catalog import ImageRecord

TINY = EmbedderConfig(model="tiny", device="cpu")


class EveryOtherFile:
    """A lister of our own: half of what the local one finds."""

    def list(self, inputs: Sequence[str]) -> Listing:
        listing = list_images(inputs)
        return replace(listing, files=listing.files[::2])


def test_injected_stages_drive_the_build(tmp_path, photos, tiny_embedder):
    config = BuildConfig(inputs=(str(photos[0].parent),), out=tmp_path / "idx", embedder=TINY,
                         workers=0, indexing=IndexingOptions(progress=False))
    stages = replace(local_stages(config, tiny_embedder), lister=EveryOtherFile())
    report = run_build(config, stages=stages)
    assert report.ingest.embedded == len(photos) // 2
    indexed = set(Searcher(tmp_path / "idx").catalog.ids_for_paths(str(p) for p in photos))
    assert indexed == {str(p) for p in photos[::2]}


def test_nothing_new_never_asks_for_the_model(tmp_path, photos, tiny_embedder):
    config = BuildConfig(inputs=tuple(str(p) for p in photos[:6]), out=tmp_path / "idx",
                         embedder=TINY, workers=0, indexing=IndexingOptions(progress=False))
    run_build(config, embedder=tiny_embedder)
    calls = []
    stages = local_stages(config, tiny_embedder)

    def counted():
        calls.append(1)
        return stages.embedder()

    report = run_build(config, stages=replace(stages, embedder=counted))
    assert calls == [] and report.skipped == 6 and report.ingest.embedded == 0


def test_dedup_policy_keeps_reuses_and_embeds():
    present = {"/same": ImageRecord("/same", 1, 1, "s", id=7)}
    stored = {"dup": np.ones(4, np.float32)}
    records = [ImageRecord("/same", 2, 2, "s"),  # touched: keep id 7
               ImageRecord("/new", 1, 1, "n"),  # embed
               ImageRecord("/copy", 1, 1, "n"),  # same bytes as the row above
               ImageRecord("/other", 1, 1, "dup"),  # bytes stored earlier
               ImageRecord("/same2", 1, 1, "m")]  # embed
    decisions = decide(records, present, stored.get)
    assert [(r.path, r.id) for r in decisions.keep] == [("/same", 7)]
    assert decisions.embed == [1, 4]
    sources = [(r.path, s if isinstance(s, int) else "stored") for r, s in decisions.store]
    assert sources == [("/new", 1), ("/copy", 1), ("/other", "stored"), ("/same2", 4)]
    assert decisions.reused == 2


def test_the_local_lister_is_the_sources_module(tmp_path, photos):
    listing = local_stages(BuildConfig(inputs=(), out=Path(tmp_path))).lister.list(
        [str(photos[0].parent)])
    assert [f.path for f in listing.files] == sorted(str(p) for p in photos)
