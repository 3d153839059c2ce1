"""RaBitQ codes, the automatic choice from 4,096 lists: built, tuned, grown, searched."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from index.ann import faiss_index as ann
from index.ann.params import RABITQ_CODES, IndexOverrides, choose_settings
from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.ann.tuning import TuneConfig, tune_searcher
from index.build.publish import IndexingOptions, settings_for
from index.build.vector_import import import_vectors
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory
from index.store.manifest import code_bytes
from tests.conftest import IVF_DIM, IVF_N
from tests.synthetic import clustered, keys

SPEC = f"IVF256,{RABITQ_CODES}"


@pytest.fixture()
def rabitq_dir(rabitq_template):
    return rabitq_template


@pytest.mark.parametrize("dim", [64, 100, 512, 768])
@pytest.mark.parametrize("codes", ["RaBitQ", "RaBitQ2", "RaBitQ4", "RaBitQfs", "RaBitQfs2"])
def test_bytes_per_vector_are_what_faiss_stores(dim, codes):
    index = faiss.index_factory(dim, f"IVF16,{codes}", faiss.METRIC_INNER_PRODUCT)
    settings = choose_settings(100_000, dim, IndexOverrides(spec=f"IVF16,{codes}"))
    assert code_bytes(settings, dim) == faiss.downcast_index(index).code_size
    assert settings.refine_factor > 1  # estimated scores are re-ranked by default


def test_the_tuner_never_tries_rabitq_without_re_ranking(rabitq_dir, ivf_template):
    searcher = Searcher(rabitq_dir)
    settings = searcher.manifest.index
    assert settings.spec == SPEC and not settings.auto
    assert settings.tuned_recall is not None and settings.tuned_recall >= 0.95
    assert settings.refine_factor >= 2
    again = tune_searcher(searcher, TuneConfig(queries=100))
    assert again.met and min(t.refine for t in again.trials) == 2
    searcher.close()
    sq8 = Searcher(ivf_template)  # near-exact SQ8 codes start without re-ranking
    assert min(t.refine for t in tune_searcher(sq8, TuneConfig(queries=100)).trials) == 1
    sq8.close()


def test_defaults_reach_the_recall_they_record_on_new_queries(rabitq_dir):
    searcher = Searcher(rabitq_dir)
    stored = searcher.store.get(np.arange(IVF_N))
    rng = np.random.default_rng(5)  # new points beside stored ones, as new photos land
    queries = stored[rng.choice(IVF_N, 200, replace=False)] \
        + rng.normal(0, 0.05, (200, IVF_DIM)).astype(np.float32)
    truth = faiss.IndexFlatIP(IVF_DIM)
    truth.add(stored)
    _, exact = truth.search(queries, 10)
    found = searcher.search(queries, SearchParams(k=10)).ids
    recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, exact, strict=True)])
    assert recall >= 0.95
    # without re-ranking, the 2-bit estimates alone rank worse: the re-rank is doing work
    plain = searcher.search(queries, SearchParams(k=10, refine_factor=1)).ids
    assert np.mean([len(set(f) & set(t)) / 10 for f, t in zip(plain, exact, strict=True)]) \
        < recall
    searcher.close()


def test_an_incremental_build_adds_to_the_trained_codes(rabitq_dir, tmp_path):
    import shutil

    shutil.copytree(rabitq_dir.path, tmp_path / "idx")
    directory = IndexDirectory(tmp_path / "idx")
    more = clustered(300, IVF_DIM, seed=11)
    result = import_vectors(directory, more, keys(300, start=IVF_N),
                            precomputed_identity(IVF_DIM), IndexingOptions(progress=False))
    assert not result.retrained and result.manifest.index.spec == SPEC
    searcher = Searcher(directory)
    hits = searcher.search(more[:20], SearchParams(k=1))
    np.testing.assert_array_equal(hits.ids[:, 0], np.arange(IVF_N, IVF_N + 20))
    searcher.close()


def test_the_query_bits_measured_are_the_ones_stored(rabitq_dir):
    searcher = Searcher(rabitq_dir)
    assert ann.ivf_of(searcher.index).qb == ann.RABITQ_QUERY_BITS  # faiss's default is 4
    searcher.close()


def test_an_earlier_rules_sq8_index_keeps_its_codes_until_its_lists_change(ivf_template):
    """Upgrading does not retrain a large automatic SQ8 index behind the user's back: the
    codes follow the rule again when nlist changes, when it retrains anyway."""
    old = Searcher(ivf_template).manifest.with_index(spec="IVF4096,SQ8", nlist=4096, auto=True)
    same = settings_for(1_000_000, old.dim, old, IndexOverrides())
    assert (same.spec, same.auto) == ("IVF4096,SQ8", True)
    assert same.default_nprobe == old.index.default_nprobe  # the tuning carries over
    grown = settings_for(4_000_000, old.dim, old, IndexOverrides())
    assert (grown.spec, grown.auto) == (f"IVF8192,{RABITQ_CODES}", True)
