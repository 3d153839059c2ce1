"""Info and `visearch info` say what the build's tuning measured for the served search
defaults and what one vector costs, over a real server on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from cli.info import describe
from cli.main import main as visearch
from index.ann.search import Searcher
from server.client import SearchClient
from server.index_info import defaults_fields


def test_info_reports_the_tuned_defaults_and_bytes(ivf_server, ivf_template):
    index = ivf_template.manifest().index
    assert index.spec.endswith(",SQ8") and index.tuned_recall is not None  # built tuned
    with SearchClient(f"127.0.0.1:{ivf_server.port}", timeout=30) as client:
        info = client.info()
    assert info["default_nprobe"] == index.default_nprobe
    assert info["refine_factor"] == index.refine_factor
    assert info["tuned_recall"] == pytest.approx(index.tuned_recall, abs=1e-6)
    assert info["target_recall"] == pytest.approx(0.95, abs=1e-6)
    assert info["tuned_k"] == 10 and info["tune_queries"] == index.tune_queries == 300
    assert int(info["tuned_vector_count"]) == index.tuned_vectors == 20_000  # all it holds
    # SQ8: one byte per dimension; re-rank rows are the float16 shards, memory-mapped.
    assert (info["code_bytes"], info["rerank_bytes"], info["rerank_store"]) == (64, 128, "mmap")


def test_info_command_prints_them(ivf_server, ivf_template, capsys):
    index = ivf_template.manifest().index
    address = f"127.0.0.1:{ivf_server.port}"
    assert visearch(["info", "--server", address]) == 0
    text = capsys.readouterr().out
    verdict = "met" if index.tuned_recall >= 0.95 else "NOT met"
    assert (f"nprobe {index.default_nprobe}, refine {index.refine_factor}, tuned at 20,000 "
            f"vectors: "
            f"10-recall@10 {index.tuned_recall:.3f} on 300 sampled queries (target 0.95 "
            f"{verdict})") in text
    assert "bytes per vector: 64 code + 128 re-rank store (mmap) + 8 id" in text
    assert visearch(["info", "--server", address, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["code_bytes"] == 64


def test_exact_index_has_no_tuning_fields(client):
    info = client.info()  # the 40-vector Flat index of tests/server/conftest.py
    assert info["exact"] is True and "tuned_recall" not in info and "target_recall" not in info
    assert (info["code_bytes"], info["rerank_bytes"], info["rerank_store"]) == (256, 0, "")
    assert describe(info)[-1] == "search: exact (flat), no tuning needed"


def test_untuned_and_ram_store_are_said_so(ivf_template):
    searcher = Searcher(ivf_template.path, refine_store="ram")
    try:
        assert defaults_fields(searcher)["rerank_store"] == "ram"
    finally:
        searcher.close()
    lines = describe({"model": "m", "dim": 8, "index_spec": "IVF8,SQ8", "default_nprobe": 2,
                      "refine_factor": 2, "code_bytes": 8, "rerank_bytes": 16,
                      "rerank_store": "ram"})
    assert lines[-2] == "search defaults: nprobe 2, refine 2 (not tuned)"
    assert lines[-1] == "bytes per vector: 8 code + 16 re-rank store (ram) + 8 id"
