"""The automatic index rule, at sizes from a handful to a billion vectors."""

from __future__ import annotations

import pytest

from index.ann.params import (
    FLAT_BELOW,
    RABITQ_CODES,
    IndexOverrides,
    IndexSpecError,
    auto_nlist,
    auto_pq_m,
    choose_settings,
)


@pytest.mark.parametrize("n", [1, 500, FLAT_BELOW - 1])
def test_small_corpora_get_an_exact_flat_index(n):
    settings = choose_settings(n, 512)
    assert settings.spec == "Flat" and settings.exact and settings.refine_factor == 1


@pytest.mark.parametrize("n, nlist, codes", [
    (10_000, 256, "SQ8"), (100_000, 1024, "SQ8"), (524_287, 2048, "SQ8"),
    (524_288, 4096, RABITQ_CODES), (1_000_000, 4096, RABITQ_CODES),
    (10_000_000, 16384, RABITQ_CODES), (1_000_000_000, 131072, RABITQ_CODES)])
def test_large_corpora_get_ivf_with_power_of_two_lists(n, nlist, codes):
    """SQ8 codes while the lists are small, RaBitQ's from 4,096 lists, where the scan of
    the codes is what a query costs (index/ann/params.py)."""
    settings = choose_settings(n, 512)
    assert settings.spec == f"IVF{nlist},{codes}" and not settings.exact
    assert n / settings.nlist >= 39  # training points per centroid
    assert settings.train_size <= min(n, max(500_000, 39 * nlist))
    assert settings.train_size >= min(n, 39 * nlist)
    assert 1 <= settings.default_nprobe <= nlist and settings.refine_factor > 1


def test_an_hnsw_coarse_spec_trains_on_thirty_points_per_list():
    settings = choose_settings(1_000_000, 512, IndexOverrides(spec="IVF16384_HNSW32,SQ8"))
    assert (settings.nlist, settings.train_size, settings.auto) == (16384, 500_000, False)
    assert choose_settings(10_000_000, 512, IndexOverrides(spec="IVF65536_HNSW32,SQ8")
                           ).train_size == 30 * 65536


def test_nlist_is_stable_while_the_corpus_grows():
    assert auto_nlist(60_000) == auto_nlist(90_000)  # no retraining for a 50% growth


@pytest.mark.parametrize("dim, m", [(512, 64), (768, 64), (1024, 64), (64, 16), (100, 25),
                                    (7, 1)])
def test_pq_m_divides_dim(dim, m):
    assert auto_pq_m(dim) == m and dim % m == 0


def test_overrides_and_their_errors():
    assert choose_settings(50_000, 512, IndexOverrides(nlist=64)).spec == "IVF64,SQ8"
    assert choose_settings(50_000, 512, IndexOverrides(pq_m=32)).spec == "IVF1024,PQ32x8"
    spec = choose_settings(5_000, 512, IndexOverrides(spec="IVF32,PQ16"))
    assert (spec.nlist, spec.pq_m, spec.nbits, spec.auto) == (32, 16, 8, False)
    with pytest.raises(IndexSpecError, match="divide"):
        choose_settings(50_000, 512, IndexOverrides(pq_m=7))
    with pytest.raises(IndexSpecError, match="too few"):
        choose_settings(100, 512, IndexOverrides(nlist=64))
