"""Self-tuning: the build's defaults reach the recall they record, at the cheapest setting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.ann.tuning import (
    MARGIN,
    Trial,
    TuneConfig,
    choose,
    defaults_note,
    recall_without_self,
    tune_searcher,
)
from index.store.manifest import Manifest


def test_an_automatic_build_records_a_recall_that_meets_its_target(ivf_template):
    searcher = Searcher(ivf_template)
    settings = searcher.manifest.index
    assert settings.target_recall == 0.95 and settings.tuned_k == 10
    # aimed MARGIN above the target: sampled stored vectors read more than new queries get
    assert settings.tuned_recall is not None and settings.tuned_recall >= 0.95 + MARGIN
    # the same measurement again gives the recorded recall at the recorded settings
    again = tune_searcher(searcher, TuneConfig(queries=settings.tune_queries or 300))
    assert (again.nprobe, again.refine) == (settings.default_nprobe, settings.refine_factor) \
        or again.met
    measured = [t for t in again.trials if (t.nprobe, t.refine) ==
                (settings.default_nprobe, settings.refine_factor)]
    if measured:
        assert abs(measured[0].recall - settings.tuned_recall) < 1e-3


def test_choose_takes_the_fastest_setting_that_meets_the_target():
    trials = [Trial(8, 1, 0.80, 0.1), Trial(16, 2, 0.96, 0.4), Trial(8, 4, 0.97, 0.3),
              Trial(64, 8, 0.99, 0.9)]
    assert choose(trials, 0.95) == (trials[2], True)
    # none meets it: the best recall, not the fastest
    assert choose(trials[:1] + [Trial(4, 1, 0.7, 0.05)], 0.95) == (trials[0], False)


def test_recall_leaves_the_query_itself_out():
    found = np.array([[5, 1, 2], [7, 3, 9]])
    truth = np.array([[5, 1, 4], [7, 3, 9]])
    assert recall_without_self(found, truth, np.array([5, 7]), 2) == (0.5 + 1.0) / 2


def test_old_manifests_without_tuning_fields_still_load(ivf_template):
    data = json.loads(json.dumps(ivf_template.manifest().to_json()))
    for name in ("target_recall", "tuned_recall", "tuned_k", "tune_queries", "refine_store",
                 "tuned_vectors"):
        data["index"].pop(name)
    old = Manifest.from_json(data)
    assert old.index.tuned_recall is None and old.index.refine_store == "mmap"
    assert old.index.tuned_vectors is None
    assert old.bytes_per_vector()["code"] == 64  # SQ8 over 64 dimensions


def test_the_ram_refine_store_returns_the_same_vectors_and_hits(ivf_template):
    mapped = Searcher(ivf_template, refine_store="mmap")
    in_ram = Searcher(ivf_template, refine_store="ram")
    ids = np.arange(0, mapped.store.count, 97)
    np.testing.assert_array_equal(in_ram.store.get(ids), mapped.store.get(ids))
    queries = mapped.store.get(ids[:50])
    from index.ann.query import SearchParams

    params = SearchParams(k=10, nprobe=16, refine_factor=4)
    a, b = mapped.search(queries, params), in_ram.search(queries, params)
    np.testing.assert_array_equal(a.ids, b.ids)


@pytest.mark.slow
def test_the_time_cap_bounds_tuning_and_the_build_still_publishes(ivf_template, tmp_path):
    from index.build.publish import IndexingOptions
    from index.build.vector_import import import_vectors
    from index.store.contract import precomputed_identity
    from index.store.directory import IndexDirectory
    from tests.conftest import IVF_DIM, IVF_N
    from tests.synthetic import clustered, keys

    uncapped = ivf_template.manifest()
    assert uncapped.build["tune_capped"] is False and uncapped.build["tune_trials"] > 1
    directory = IndexDirectory(tmp_path / "capped.idx")
    result = import_vectors(directory, clustered(IVF_N, IVF_DIM), keys(IVF_N),
                            precomputed_identity(IVF_DIM),
                            IndexingOptions(progress=False, tune_time_cap_s=0.0))
    manifest = directory.manifest()  # published, and it is what the build returned
    assert result.published and manifest == result.manifest
    # one trial (nprobe 1, refine 1), then the cap: recorded as such, with what it measured
    assert manifest.build["tune_capped"] is True and manifest.build["tune_trials"] == 1
    assert manifest.build["tune_seconds"] < uncapped.build["tune_seconds"]
    index = manifest.index
    assert (index.default_nprobe, index.refine_factor) == (1, 1)
    assert index.tuned_recall is not None and index.tuned_recall < 0.95  # NOT met, said so
    assert index.tuned_recall < uncapped.index.tuned_recall
    assert "NOT met" in defaults_note(manifest)
    searcher = Searcher(directory)
    try:
        assert searcher.search(searcher.store.get(np.arange(3)), SearchParams(k=1)).ids[
            :, 0].tolist() == [0, 1, 2]
    finally:
        searcher.close()


def test_the_ladder_has_half_octave_rungs_up_to_nlist():
    from index.ann.tuning import nprobe_ladder

    assert nprobe_ladder(4096)[:8] == [1, 2, 3, 4, 6, 8, 12, 16]
    assert nprobe_ladder(4096)[-4:] == [1536, 2048, 3072, 4096]
    assert nprobe_ladder(100)[-3:] == [64, 96, 100] and nprobe_ladder(1) == [1]


def test_a_deeper_refine_steps_down_every_rung_that_still_meets_the_target():
    """Recall as measured at 1M clip-cone (IVF4096,SQ8): refine 2 meets the aim at 96,
    one rung below refine 1's 128, and refine 4 gains nothing more: the walk ends."""
    from index.ann.tuning import _walk, nprobe_ladder

    recall = {(64, 1): 0.938, (96, 1): 0.955, (128, 1): 0.966, (96, 2): 0.973,
              (64, 2): 0.956, (64, 4): 0.956}
    ran: list[tuple[int, int]] = []

    def run(nprobe: int, refine: int) -> Trial:
        ran.append((nprobe, refine))
        return Trial(nprobe, refine, recall.get((nprobe, refine), 0.5 + nprobe / 1000), 0.0)

    _walk(run, nprobe_ladder(4096), [1, 2, 4, 8], 0.965, lambda: False)
    assert ran[-5:] == [(96, 1), (128, 1), (96, 2), (64, 2), (64, 4)]  # no refine 8
