"""scripts/bench_gpu.py (the GPU ingest benchmark that scripts/gpu_check.sh runs) at a toy
size on the CPU with the **untrained** tiny model: every part is produced with numbers.
No speed is asserted; on a machine without CUDA the GPU decode path is not measured."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, cli_env


@pytest.mark.slow
def test_gpu_benchmark_smoke_run_writes_json_and_markdown(tmp_path):
    result = subprocess.run(
        [sys.executable, "scripts/bench_gpu.py", "--device", "cpu", "--model", "tiny",
         "--images", "12", "--size", "96x72", "--batch", "4", "--workers", "0",
         "--model-seconds", "0.2", "--out", str(tmp_path)],
        cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert data["photos"]["count"] == 12
    assert [r["decode"] for r in data["end_to_end"]] == ["auto", "cpu"]
    assert all(r["embedded"] == 12 and r["failed"] == 0 and r["images_per_s"] > 0
               for r in data["end_to_end"])
    assert data["model_alone"]["rows"][0]["images_per_s"] > 0
    markdown = (tmp_path / "gpu_bench.md").read_text()
    assert "x CPU decode" in markdown and "TFLOP/s" in markdown
