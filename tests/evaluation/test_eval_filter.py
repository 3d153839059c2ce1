"""`visearch eval --filter`: filtered recall against exact search over the allowed images."""

from __future__ import annotations

import json

from cli.main import main as visearch
from index.build.publish import IndexingOptions
from index.build.vector_import import import_vectors
from index.store import metadata
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory
from server.app import SearchServer
from server.config import ServerConfig
from tests.synthetic import clustered, keys


def bucketed(tmp_path) -> IndexDirectory:
    directory = IndexDirectory(tmp_path / "idx")
    import_vectors(directory, clustered(3000, 32), keys(3000), precomputed_identity(32),
                   IndexingOptions(progress=False))
    catalog = directory.catalog()
    metadata.write_fields(catalog, [(i, {"bucket": i % 100}) for i in range(3000)],
                          {"bucket": "integer"})
    catalog.close()
    return directory


def test_filtered_recall_in_process_and_through_the_server(tmp_path):
    directory = bucketed(tmp_path)
    args = ["eval", str(directory.path), "--filter", "bucket < 5", "--k", "1,10",
            "--num-queries", "100", "--single-queries", "5"]
    assert visearch([*args, "--json", str(tmp_path / "local.json")]) == 0
    local = json.loads((tmp_path / "local.json").read_text())
    assert local["filter"] == {"expression": "bucket < 5", "matching": 150}
    row = local["results"][0]
    assert row["k_recall"]["10"] == 1.0 and row["one_recall"]["1"] == 1.0  # Flat: exact
    server = SearchServer(ServerConfig(index_dir=directory.path, port=0, device="cpu",
                                       drain_seconds=0.0))
    server.start()
    server.load()
    try:
        assert visearch([*args, "--server", f"127.0.0.1:{server.port}", "--json",
                         str(tmp_path / "remote.json")]) == 0
    finally:
        server.stop(grace=1)
    remote = json.loads((tmp_path / "remote.json").read_text())
    assert remote["results"][0]["k_recall"] == row["k_recall"]


def test_an_unfiltered_sweep_is_not_exact_filtered_ground_truth(tmp_path):
    """The check can fail: without the filter the same ground truth is missed."""
    directory = bucketed(tmp_path)
    from evaluation.backends import FilteredLocalBackend, LocalBackend
    from evaluation.fidelity import Setting, exact_neighbours, measure
    from index.ann.search import Searcher
    from index.rerank.stage import Rerank, allowed_ids

    searcher = Searcher(directory)
    allowed = allowed_ids(searcher, Rerank(filter="bucket < 5"))
    import numpy as np

    matching = np.flatnonzero(allowed)
    queries = searcher.store.get(np.arange(0, 3000, 30))
    truth = exact_neighbours(searcher.store, matching, queries, 10)
    setting = Setting(None, 1)
    filtered = measure(FilteredLocalBackend(searcher, "bucket < 5"), setting, queries, truth,
                       [10], 5)
    plain = measure(LocalBackend(searcher), setting, queries, truth, [10], 5)
    assert filtered.k_recall[10] == 1.0 and plain.k_recall[10] < 0.2
