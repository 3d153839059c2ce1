"""The benchmark suite runs end to end at a toy size (benchmarks are not tests: no speed is
asserted here, only that every section is produced with numbers)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, cli_env


@pytest.mark.slow
def test_quick_benchmark_writes_every_section(tmp_path):
    out = tmp_path / "benchmarks.md"
    result = subprocess.run(
        [sys.executable, "scripts/bench.py", "--quick", "--out", str(out), "--work",
         str(tmp_path / "work")], cwd=ROOT, env=cli_env(), capture_output=True, text=True,
        timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    for title in ("Embedding pipeline", "Index search", "Recall by default", "gRPC overhead",
                  "Bytes per vector", "Scaling with N", "Scaling with the image count",
                  "GPU path"):
        assert f". {title}" in text, title
    data = json.loads(out.with_suffix(".json").read_text())
    for row in data["Index search"]["rows"]:
        assert row["batch_ratio"] > 0 and 0 <= row["recall_at_10"] <= 1
    for row in data["gRPC overhead"]["rows"]:
        assert row["grpc_p50"] > 0 and row["local_p50"] > 0
    cpu = data["gRPC overhead"]["cpu"]  # CPU per call, unpinned and (2+ cores) --cpus
    assert cpu["local"]["cpu_ms"] > 0 and cpu["servers"]["default"]["search_server_ms"] > 0
    recall = data["Recall by default"]["rows"]
    assert {r["distribution"] for r in recall} == {"clustered", "clip-cone"}
    for row in recall:  # the build tuned it, and the table says whether its target is met
        assert row["tuned_recall"] is not None and 0 < row["recall_at_10"] <= 1
        assert row["flat_ratio"] > 0 and row["met"]["recall"] == (row["recall_at_10"] >= 0.95)
    assert data["Embedding pipeline"]["tiny"]["ratio"] > 0
    ceiling = data["Embedding pipeline"]["decode"]["ceiling"]
    assert ceiling["ratio"] > 0 and ceiling["target"] == 0.8 and "Build at the decode" in text
    assert (tmp_path / "bench_search.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "bench_scaling.png").read_bytes()[:4] == b"\x89PNG"
