"""Dockerfile.gpu's structure (this machine cannot run Docker, so the build is not run here)."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def stages() -> dict[str, list[str]]:
    """Instructions of each stage, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile.gpu").read_text()
    text = re.sub(r"\\\n", " ", text)
    result: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = match.group(2)
            result[current] = [line]
        elif current:
            result[current].append(line)
    return result


def instructions(stage: list[str], keyword: str) -> list[str]:
    return [line[len(keyword):].strip() for line in stage if line.upper().startswith(keyword + " ")]


def test_multi_stage_with_cuda_runtime(stages):
    assert list(stages) == ["builder", "runtime"]
    text = (ROOT / "Dockerfile.gpu").read_text()
    base = re.search(r"ARG CUDA_IMAGE=(\S+)", text).group(1)
    assert base.startswith("nvidia/cuda:") and "runtime" in base
    assert any("pip wheel" in run and ".[gpu]" in run for run in instructions(stages["builder"],
                                                                              "RUN"))


def test_exactly_one_faiss_the_gpu_one(stages):
    install = " ".join(instructions(stages["runtime"], "RUN"))
    assert "from=builder" in install and "visearch[gpu]" in install
    assert install.index("pip uninstall -y faiss-cpu") < install.index("--force-reinstall")
    assert "grep -ci '^faiss')\" = 1" in install and "StandardGpuResources" in install


def test_runs_as_non_root_with_visearch_entrypoint(stages):
    runtime = stages["runtime"]
    users = instructions(runtime, "USER")
    assert users and users[-1] not in ("root", "0")
    assert json.loads(instructions(runtime, "ENTRYPOINT")[-1]) == ["visearch"]
    command = json.loads(instructions(runtime, "CMD")[-1])
    assert command[0] == "serve" and "0.0.0.0" in command
    assert "50051" in instructions(runtime, "EXPOSE")


def test_default_command_requires_tokens_on_all_interfaces(stages):
    """0.0.0.0 without TLS or tokens is refused by the server; the image must not pass
    --insecure for the user, so it asks for a mounted token file instead."""
    command = json.loads(instructions(stages["runtime"], "CMD")[-1])
    assert command[command.index("--token-file") + 1] == "/run/secrets/visearch-tokens"
    assert "--insecure" not in command and "--auth-health" not in command


def test_health_check_uses_the_grpc_health_service(stages):
    (check,) = instructions(stages["runtime"], "HEALTHCHECK")
    assert '"visearch", "health"' in check


def test_model_weights_live_in_a_volume(stages):
    runtime = stages["runtime"]
    assert any("HF_HOME=/models" in env for env in instructions(runtime, "ENV"))
    assert "/models" in json.loads(instructions(runtime, "VOLUME")[-1])
