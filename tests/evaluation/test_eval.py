"""`visearch eval`: recall sweeps against exact search, --apply, labels, and the --server mode."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cli.main import main as visearch
from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.build.publish import IndexingOptions
from index.build.vector_import import import_vectors
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory
from server.app import SearchServer
from server.client import SearchClient
from server.config import ServerConfig
from tests.synthetic import clustered, keys


def run_eval(*args, tmp_path, name="report.json") -> dict:
    out = tmp_path / name
    assert visearch(["eval", *map(str, args), "--json", str(out)]) == 0
    return json.loads(out.read_text())


def recall_by_nprobe(report: dict, refine: int, k: str = "10") -> list[float]:
    rows = sorted((r for r in report["results"] if r["refine_factor"] == refine),
                  key=lambda r: r["nprobe"])
    return [r["k_recall"][k] for r in rows]


def test_flat_index_has_perfect_recall(tmp_path, capsys):
    directory = IndexDirectory(tmp_path / "flat")
    import_vectors(directory, clustered(3000, 32), keys(3000), precomputed_identity(32),
                   IndexingOptions(progress=False))
    report = run_eval(directory.path, "--num-queries", "300", "--k", "1,10,100",
                      tmp_path=tmp_path)
    (row,) = report["results"]
    assert row["nprobe"] is None
    assert all(v == 1.0 for v in row["k_recall"].values())
    assert all(v == 1.0 for v in row["one_recall"].values())
    assert report["num_queries"] == 300 and report["index_spec"] == "Flat"
    assert "1.000" in capsys.readouterr().out


def test_ivf_recall_rises_with_nprobe(ivf_template, tmp_path):
    plot = tmp_path / "recall.png"
    report = run_eval(ivf_template.path, "--nprobe", "1,4,16,64", "--k", "1,10",
                      "--num-queries", "400", "--single-queries", "50", "--plot", plot,
                      tmp_path=tmp_path)
    assert report["nprobe"] == [1, 4, 16, 64]
    plain = recall_by_nprobe(report, refine=1)
    assert plain == sorted(plain) and plain[-1] > plain[0] + 0.1
    refined = recall_by_nprobe(report, refine=4, k="1")
    assert refined[-1] >= recall_by_nprobe(report, refine=1, k="1")[-1]
    assert any(r["pareto"] for r in report["results"])
    for r in report["results"]:
        assert r["batch_qps"] > 0 and r["single_ms"]["p99"] >= r["single_ms"]["p50"] > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["machine"]["cores"] >= 1 and report["seed"] == 0


def test_apply_changes_the_served_default(ivf_copy, tmp_path):
    before = ivf_copy.manifest()
    report = run_eval(ivf_copy.path, "--nprobe", "1,2,8,32", "--k", "10", "--num-queries", "200",
                      "--single-queries", "20", "--target-recall", "0.5", "--apply",
                      tmp_path=tmp_path)
    assert report["target"]["chosen"]["k_recall"]["10"] >= 0.5
    # --apply writes what the build's own tuner picks for the target, with its recall
    applied = report["applied"]
    chosen = {"nprobe": applied["default_nprobe"], "refine_factor": applied["refine_factor"]}
    assert applied["version"] == before.version + 1 and applied["met"]
    after = ivf_copy.manifest()
    assert after.index.default_nprobe == chosen["nprobe"]
    assert after.index.refine_factor == chosen["refine_factor"]
    assert after.index.target_recall == 0.5 <= after.index.tuned_recall
    # the build tuned for 0.95; the cheaper target needs less
    assert (chosen["nprobe"], chosen["refine_factor"]) != (before.index.default_nprobe,
                                                           before.index.refine_factor)
    # same trained index, hard-linked into the new version
    assert ivf_copy.index_path(after).stat().st_ino == ivf_copy.index_path(before).stat().st_ino
    server = SearchServer(ServerConfig(index_dir=ivf_copy.path, port=0, device="cpu",
                                       drain_seconds=0))
    server.start()
    server.load()
    try:
        with SearchClient(f"127.0.0.1:{server.port}") as client:
            info = client.info()
            assert info["default_nprobe"] == chosen["nprobe"] and info["index_version"] == 2
            query = clustered(1, 64, seed=5)[0]
            default = client.search_vector(query, k=10)
            explicit = client.search_vector(query, k=10, nprobe=chosen["nprobe"],
                                            refine_factor=chosen["refine_factor"])
            assert [h.id for h in default.hits] == [h.id for h in explicit.hits]
    finally:
        server.stop(grace=1)


def test_apply_needs_a_target(ivf_copy, capsys):
    assert visearch(["eval", str(ivf_copy.path), "--apply"]) == 2
    assert "--apply needs --target-recall" in capsys.readouterr().err


def test_server_mode_matches_in_process(ivf_template, tmp_path):
    args = ["--nprobe", "2,16", "--k", "1,10", "--num-queries", "150", "--single-queries", "10"]
    local = run_eval(ivf_template.path, *args, tmp_path=tmp_path, name="local.json")
    server = SearchServer(ServerConfig(index_dir=ivf_template.path, port=0, device="cpu",
                                       drain_seconds=0))
    server.start()
    server.load()
    try:
        remote = run_eval(ivf_template.path, *args, "--server", f"127.0.0.1:{server.port}",
                          tmp_path=tmp_path, name="remote.json")
    finally:
        server.stop(grace=1)
    assert remote["through"].startswith("127.0.0.1:")
    for a, b in zip(local["results"], remote["results"], strict=True):
        assert (a["nprobe"], a["refine_factor"]) == (b["nprobe"], b["refine_factor"])
        assert a["k_recall"] == b["k_recall"] and a["one_recall"] == b["one_recall"]


def test_labels_measure_task_quality(tmp_path):
    # 30 tight clusters of 40: every neighbour in a cluster shares its label
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((30, 32))
    labels = np.repeat(np.arange(30), 40)
    vectors = centres[labels] + 0.01 * rng.standard_normal((1200, 32))
    directory = IndexDirectory(tmp_path / "labelled")
    names = keys(1200)
    import_vectors(directory, vectors, names, precomputed_identity(32),
                   IndexingOptions(progress=False))
    labels_csv = tmp_path / "labels.csv"
    with open(labels_csv, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        writer.writerows((n, f"class{c}") for n, c in zip(names, labels, strict=True))
        writer.writerow(["/synthetic/not-indexed", "class0"])
    report = run_eval(directory.path, "--labels", labels_csv, "--k", "1,10,39",
                      "--num-queries", "200", tmp_path=tmp_path)
    assert report["mode"] == "task_quality" and report["queries"] == 200
    assert report["labelled_in_index"] == 1200 and report["labels"] == 30
    m = report["metrics"]
    assert m["1"]["precision"] == 1.0 and m["10"]["precision"] == 1.0
    assert m["39"]["recall"] == pytest.approx(1.0) and m["39"]["map"] == pytest.approx(1.0)
    assert m["10"]["recall"] == pytest.approx(10 / 39)
    assert m["10"]["mrr"] == 1.0 and m["10"]["ndcg"] == pytest.approx(1.0)


def test_labels_exclude_the_query_itself(tmp_path):
    directory = IndexDirectory(tmp_path / "pairs")
    vectors = np.eye(8)[[0, 0, 1, 1, 2, 2, 3, 3]] + 0.001 * np.arange(8)[:, None]
    import_vectors(directory, vectors, keys(8), precomputed_identity(8),
                   IndexingOptions(progress=False))
    labels = tmp_path / "labels.csv"
    labels.write_text("".join(f"{n},{i // 2}\n" for i, n in enumerate(keys(8))))
    report = run_eval(directory.path, "--labels", labels, "--k", "1", tmp_path=tmp_path)
    assert report["metrics"]["1"]["recall"] == 1.0  # the twin, not the query, is first
    searcher = Searcher(directory)
    hits = searcher.search(searcher.store.get(np.arange(8)), SearchParams(k=1))
    assert (hits.ids[:, 0] == np.arange(8)).all()  # without exclusion each finds itself


def test_query_folder_is_embedded_with_the_index_model(tmp_path, photos, tiny_embedder):
    from embedder import EmbedderConfig
    from index.build.pipeline import BuildConfig, run_build

    run_build(BuildConfig(inputs=tuple(map(str, photos[:30])), out=tmp_path / "idx",
                          embedder=EmbedderConfig(model="tiny", device="cpu"), workers=0,
                          indexing=IndexingOptions(progress=False)), embedder=tiny_embedder)
    queries = tmp_path / "queries"
    queries.mkdir()
    for p in photos[40:45]:
        (queries / p.name).write_bytes(p.read_bytes())
    report = run_eval(tmp_path / "idx", "--queries", queries, "--k", "1,5", tmp_path=tmp_path)
    assert report["num_queries"] == 5 and report["untrained"] is True
    assert report["results"][0]["k_recall"]["5"] == 1.0  # flat: exact
