"""Drift profiles and PSI on synthetic clustered vectors (tests/synthetic.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from index import drift
from index.build.publish import IndexingOptions
from index.build.vector_import import import_vectors
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory
from tests.synthetic import clustered, keys


def nearest_scores(corpus: np.ndarray, queries: np.ndarray) -> np.ndarray:
    return (queries @ corpus.T).max(axis=1)


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift():
    shares = np.full(10, 0.1)
    assert drift.psi(shares, np.full(10, 100)) == 0.0
    shifted = np.array([0, 0, 0, 0, 0, 200, 200, 200, 200, 200])
    # Half of the mass moved off five bins: the floor keeps PSI finite, and large.
    assert drift.psi(shares, shifted) > 2.0


def test_same_distribution_reads_near_zero_and_a_shifted_one_crosses_the_threshold():
    corpus = clustered(8000, 64, seed=0)
    sample, probes = corpus[:6000], corpus[6000:7000]
    ref = drift.profile(sample, nearest_scores(sample, probes))
    round_trip = drift.Reference.from_json(ref.to_json())
    assert round_trip is not None and len(round_trip.centroids) == drift.REGIONS

    # Queries drawn like the corpus (the same clusters, fresh points).
    same = clustered(9000, 64, seed=0)[7000:9000]
    report = drift.compare(round_trip, same, nearest_scores(sample, same))
    assert set(report.psi) == set(drift.STATISTICS)
    assert max(report.psi.values()) < 0.05, report
    assert report.drifted() == []
    assert report.mean_cosine > 0.9

    # Three kinds of shift, each seen by the statistic made for it.
    novel = clustered(2000, 64, seed=7)  # clusters the corpus does not have
    report = drift.compare(round_trip, novel, nearest_scores(sample, novel))
    assert report.psi["top1_score"] > 1.0 and "top1_score" in report.drifted()

    topic = same[np.isin(round_trip.regions_of(same), [0, 1, 2])]  # a few regions only
    report = drift.compare(round_trip, topic, nearest_scores(sample, topic))
    assert report.psi["regions"] > 1.0, report

    u = np.random.default_rng(3).standard_normal(64)
    domain = same + 0.5 * u / np.linalg.norm(u)  # a shared offset, as a new camera or style
    domain /= np.linalg.norm(domain, axis=1, keepdims=True)
    report = drift.compare(round_trip, domain, nearest_scores(sample, domain))
    assert {"projections", "top1_score"} <= set(report.drifted()), report
    assert report.mean_cosine < 0.5


def test_build_records_the_reference_in_the_manifest(ivf_template):
    manifest = ivf_template.manifest()
    ref = drift.Reference.from_json(manifest.drift)
    assert ref is not None and ref.dim == manifest.dim
    assert ref.sample == min(manifest.live_count, drift.SAMPLE)
    assert ref.region_shares.sum() == pytest.approx(1.0, abs=1e-4)
    assert ref.projection_shares.shape == (drift.PROJECTIONS, drift.BINS)
    # Deciles of the corpus itself: each bin holds about a tenth of it.
    assert np.abs(ref.projection_shares - 0.1).max() < 0.01
    assert 0.5 < ref.top1_median <= 1.0


def test_tiny_corpus_has_no_regions_but_still_a_profile(tmp_path):
    directory = IndexDirectory(tmp_path / "idx")
    import_vectors(directory, clustered(30, 16), keys(30), precomputed_identity(16),
                   IndexingOptions(progress=False))
    ref = drift.Reference.from_json(directory.manifest().drift)
    assert ref is not None and len(ref.centroids) == 0
    report = drift.compare(ref, clustered(30, 16), None)
    assert set(report.psi) == {"projections"}


def test_drift_command_reports_psi_and_exits_3_on_a_shift(ivf_template, tmp_path):
    from tests.conftest import run_visearch

    same = tmp_path / "same.npy"
    np.save(same, clustered(21_000, 64, seed=0)[20_000:])
    ok = run_visearch("drift", str(ivf_template.path), "--vectors", str(same), "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["queries"] == 1000 and report["drifted"] == []
    assert max(report["psi"].values()) < 0.1

    shifted = tmp_path / "shifted.npy"
    np.save(shifted, clustered(1000, 64, seed=5))
    moved = run_visearch("drift", str(ivf_template.path), "--vectors", str(shifted))
    assert moved.returncode == 3, moved.stderr
    assert "DRIFTED" in moved.stdout and "top1_score" in moved.stdout.splitlines()[-1]

    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.ones((3, 5), dtype=np.float32))
    bad = run_visearch("drift", str(ivf_template.path), "--vectors", str(wrong))
    assert bad.returncode == 2 and "expected (n, 64)" in bad.stderr


def test_server_window_counts_only_the_last_queries():
    """The server's ring buffer (server/drift.py) against a plain recount of the last rows."""
    from server.drift import DriftWindow

    corpus = clustered(6000, 32, seed=0)
    ref = drift.profile(corpus[:5000], nearest_scores(corpus[:5000], corpus[5000:5500]))
    window = DriftWindow(ref, 100)
    stream = np.concatenate([clustered(90, 32, seed=3), corpus[5500:5740]])
    scores = nearest_scores(corpus[:5000], stream)
    for start, size in zip((0, 30, 60, 150, 151, 300), (30, 30, 90, 1, 149, 30), strict=True):
        window.add(stream[start:start + size], scores[start:start + size])
    assert window.size == 100
    live = window.report()
    expected = drift.compare(ref, stream[-100:], scores[-100:])
    assert live.psi == pytest.approx(expected.psi)
    assert live.mean_cosine == pytest.approx(expected.mean_cosine, abs=1e-5)
    assert live.top1_median == pytest.approx(expected.top1_median)
