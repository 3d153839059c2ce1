"""The automatic index rule, at sizes from a handful to a billion vectors."""

from __future__ import annotations

import pytest

from index.ann.params import (
    FLAT_BELOW,
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


@pytest.mark.parametrize("n, nlist", [
    (10_000, 256), (100_000, 1024), (999_999, 4096)])
def test_large_corpora_get_ivf_sq8_with_power_of_two_lists(n, nlist):
    settings = choose_settings(n, 512)
    assert settings.spec == f"IVF{nlist},SQ8" and not settings.exact
    assert n / settings.nlist >= 39  # training points per centroid
    assert settings.train_size <= min(n, max(500_000, 39 * nlist))
    assert settings.train_size >= min(n, 39 * nlist)
    assert 1 <= settings.default_nprobe <= nlist and settings.refine_factor > 1


@pytest.mark.parametrize("n, nlist, train", [
    (1_000_000, 16384, 500_000), (10_000_000, 65536, 30 * 65536)])
def test_from_a_million_vectors_sixteen_sqrt_n_lists_behind_hnsw(n, nlist, train):
    settings = choose_settings(n, 512)
    assert settings.spec == f"IVF{nlist}_HNSW32,SQ8" and settings.nlist == nlist
    assert settings.train_size == train  # two-level k-means: >= 30 points per list
    assert settings.auto and settings.refine_factor > 1
    # an explicit --nlist keeps the flat quantizer; PQ overrides get the same coarse rule
    assert choose_settings(n, 512, IndexOverrides(nlist=4096)).spec == "IVF4096,SQ8"
    assert choose_settings(n, 512, IndexOverrides(pq_m=64)).spec == \
        f"IVF{nlist}_HNSW32,PQ64x8"
    assert choose_settings(n, 512, IndexOverrides(spec=settings.spec)).train_size == train


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
