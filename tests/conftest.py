"""Shared fixtures: the untrained tiny model, real image folders, and CLI runners."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.imagegen import write_pictures
from tests.synthetic import clustered, keys

ROOT = Path(__file__).resolve().parents[1]
IVF_N, IVF_DIM = 20_000, 64


def pytest_collection_modifyitems(config, items):  # noqa: ARG001
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_embedder():
    """The shipped tiny model: untrained random weights, loaded once per session."""
    from embedder import EmbedderConfig
    from embedder.embedder import load_embedder

    return load_embedder(EmbedderConfig(model="tiny", device="cpu"))


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> list[Path]:
    """200 distinct images (read-only for tests: copy before changing)."""
    return write_pictures(tmp_path_factory.mktemp("photos"), 200)


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    # protos/ too: the installed visearch.v1 may be another checkout's generated code.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "protos")])
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def run_visearch(*args: str, check: bool = False, timeout: float = 300,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`visearch ARGS` in a subprocess, as a user runs it."""
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True,
        timeout=timeout, env=env or cli_env(), cwd=ROOT,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"visearch {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def ivf_template(tmp_path_factory):
    """A synthetic index by the automatic rule (IVF-SQ8, self-tuned); read-only: tests that
    change it copy it first."""
    from index.build.publish import IndexingOptions
    from index.build.vector_import import import_vectors
    from index.store.contract import precomputed_identity
    from index.store.directory import IndexDirectory

    directory = IndexDirectory(tmp_path_factory.mktemp("ivf") / "idx")
    import_vectors(directory, clustered(IVF_N, IVF_DIM), keys(IVF_N), precomputed_identity(IVF_DIM),
                   IndexingOptions(progress=False))
    return directory


@pytest.fixture(scope="session")
def pq_template(tmp_path_factory):
    """The template's vectors in an IVF-PQ index (16-byte codes, not self-tuned), whose PQ
    order differs from the exact one: what tiered re-ranking and pages are tested on."""
    from index.ann.params import IndexOverrides
    from index.build.publish import IndexingOptions
    from index.build.vector_import import import_vectors
    from index.store.contract import precomputed_identity
    from index.store.directory import IndexDirectory

    directory = IndexDirectory(tmp_path_factory.mktemp("pq") / "idx")
    import_vectors(directory, clustered(IVF_N, IVF_DIM), keys(IVF_N), precomputed_identity(IVF_DIM),
                   IndexingOptions(overrides=IndexOverrides(pq_m=16), tune=False, progress=False))
    return directory


@pytest.fixture(scope="session")
def rabitq_template(tmp_path_factory):
    """The template's vectors in RaBitQ codes (the automatic choice from 4,096 lists, named
    here at 256), self-tuned as every build is; read-only."""
    from index.ann.params import RABITQ_CODES, IndexOverrides
    from index.build.publish import IndexingOptions
    from index.build.vector_import import import_vectors
    from index.store.contract import precomputed_identity
    from index.store.directory import IndexDirectory

    directory = IndexDirectory(tmp_path_factory.mktemp("rabitq") / "idx")
    import_vectors(directory, clustered(IVF_N, IVF_DIM), keys(IVF_N), precomputed_identity(IVF_DIM),
                   IndexingOptions(overrides=IndexOverrides(spec=f"IVF256,{RABITQ_CODES}"),
                                   progress=False))
    return directory


@pytest.fixture()
def ivf_copy(ivf_template, tmp_path):
    import shutil

    from index.store.directory import IndexDirectory

    shutil.copytree(ivf_template.path, tmp_path / "idx")
    return IndexDirectory(tmp_path / "idx")
