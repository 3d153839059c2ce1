"""A synthetic IVF-PQ index directory shared by the index and evaluation tests."""

from __future__ import annotations

import pytest

from index.directory import IndexDirectory
from index.indexing import IndexingOptions
from index.vector_import import import_vectors, precomputed_identity
from tests.index.synthetic import clustered, keys

IVF_N, IVF_DIM = 20_000, 64


@pytest.fixture(scope="package")
def ivf_template(tmp_path_factory) -> IndexDirectory:
    """Read-only: tests that change an index copy it first (see ivf_copy)."""
    directory = IndexDirectory(tmp_path_factory.mktemp("ivf") / "idx")
    import_vectors(directory, clustered(IVF_N, IVF_DIM), keys(IVF_N), precomputed_identity(IVF_DIM),
                   IndexingOptions(progress=False))
    return directory


@pytest.fixture()
def ivf_copy(ivf_template, tmp_path) -> IndexDirectory:
    import shutil

    shutil.copytree(ivf_template.path, tmp_path / "idx")
    return IndexDirectory(tmp_path / "idx")
