"""Damaged index directories: each damage gives a one-line cause and the command that mends it,
and check / repair / build bring back a servable index where the stored vectors allow."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest

from common.errors import VisearchError
from index.ann.faiss_index import IndexFileError
from index.ann.query import SearchParams
from index.ann.search import Searcher
from index.build.publish import IndexingOptions
from index.build.vector_import import import_vectors
from index.check import check_directory
from index.repair import repair_directory
from index.store.atomic import DiskFullError
from index.store.catalog import Catalog, CatalogError
from index.store.contract import precomputed_identity
from index.store.directory import IndexDirectory, IndexDirectoryError
from tests.conftest import run_visearch
from tests.synthetic import clustered, keys

N, DIM = 400, 16
OPTIONS = IndexingOptions(progress=False)


@pytest.fixture()
def flat_index(tmp_path) -> IndexDirectory:
    directory = IndexDirectory(tmp_path / "idx")
    import_vectors(directory, clustered(N, DIM), keys(N), precomputed_identity(DIM), OPTIONS)
    return directory


def finds_itself(directory: IndexDirectory) -> bool:
    searcher = Searcher(directory)
    hits = searcher.search(clustered(N, DIM)[:50], SearchParams(k=1))
    return bool(np.array_equal(hits.ids[:, 0], np.arange(50)))


def problems(directory: IndexDirectory) -> dict[str, bool]:
    """Failed parts -> whether repair can mend them."""
    return {f.part: bool(f.repair) for f in check_directory(directory) if not f.ok}


def damage_index_file(directory: IndexDirectory, how: str) -> None:
    path = directory.index_path(directory.manifest())
    size = path.stat().st_size
    if how == "truncated":
        os.truncate(path, size // 2)
    elif how == "zeroed":
        path.write_bytes(b"\0" * size)
    else:
        path.unlink()


@pytest.mark.parametrize("how", ["truncated", "zeroed", "missing"])
def test_damaged_index_file_is_named_and_repaired(flat_index, how):
    damage_index_file(flat_index, how)
    with pytest.raises(IndexFileError, match=f"visearch repair {flat_index.path}"):
        Searcher(flat_index)
    assert problems(flat_index) == {"index": True}
    done, after = repair_directory(flat_index, progress=False)
    assert any("rebuilt the index" in action for action in done)
    assert all(f.ok for f in after) and finds_itself(flat_index)


def test_build_rebuilds_an_unreadable_current_index(flat_index):
    damage_index_file(flat_index, "truncated")
    result = import_vectors(flat_index, clustered(5, DIM, seed=9), keys(5, N),
                            precomputed_identity(DIM), OPTIONS)
    assert result.repaired and result.published and result.manifest.live_count == N + 5
    assert finds_itself(flat_index) and not problems(flat_index)


@pytest.mark.parametrize("how", ["overwritten", "truncated"])
def test_damaged_catalog_is_named_and_not_silently_used(flat_index, how):
    path = flat_index.catalog_path
    if how == "overwritten":
        with open(path, "r+b") as handle:
            handle.seek(8192)
            handle.write(np.random.default_rng(0).bytes(3 * 4096))
    else:
        os.truncate(path, 3000)
    assert problems(flat_index) == {"catalog": False}  # nothing left to rebuild it from
    with pytest.raises(CatalogError, match="damaged"):
        Searcher(flat_index)
    with pytest.raises(CatalogError, match="damaged"):
        import_vectors(flat_index, clustered(5, DIM), keys(5, N), precomputed_identity(DIM),
                       OPTIONS)
    with pytest.raises(VisearchError, match="catalog"):
        repair_directory(flat_index, progress=False)


def test_deleted_catalog_is_not_called_a_foreign_directory(flat_index):
    flat_index.catalog_path.unlink()
    for attempt in (lambda: Searcher(flat_index),
                    lambda: import_vectors(flat_index, clustered(5, DIM), keys(5),
                                           precomputed_identity(DIM), OPTIONS)):
        with pytest.raises(IndexDirectoryError, match="catalog.sqlite is missing"):
            attempt()


def test_garbage_in_current_is_named_and_repaired(flat_index):
    (flat_index.path / "CURRENT").write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(IndexDirectoryError, match="CURRENT is corrupt.*visearch repair"):
        Searcher(flat_index)
    assert problems(flat_index) == {"current": True}
    done, after = repair_directory(flat_index, progress=False)
    assert "CURRENT now names version 1" in done and all(f.ok for f in after)
    assert finds_itself(flat_index)


def test_leftovers_of_killed_writers_are_cleared_by_the_next_build(flat_index):
    (flat_index.path / ".CURRENT.x1y2.tmp").write_bytes(b"v000009\n")
    Catalog(flat_index.catalog_path).start_run()  # a run that never finished
    assert problems(flat_index) == {"leftovers": True, "runs": True}
    import_vectors(flat_index, clustered(5, DIM, seed=3), keys(5, N), precomputed_identity(DIM),
                   OPTIONS)
    assert not problems(flat_index)
    assert not (flat_index.path / ".CURRENT.x1y2.tmp").exists()


def test_index_files_are_readable_by_other_users(flat_index):
    old = os.umask(0o022)
    try:
        for path in [flat_index.path / "CURRENT", *flat_index.vectors_dir.iterdir(),
                     *flat_index.version_dir(1).iterdir()]:
            assert path.stat().st_mode & 0o044 == 0o044, path
    finally:
        os.umask(old)


@pytest.mark.slow
def test_commands_on_damaged_directories_answer_without_traceback(flat_index, tmp_path):
    damage_index_file(flat_index, "truncated")
    served = run_visearch("serve", str(flat_index.path), "--port", "0", timeout=120)
    assert served.returncode != 0 and "Traceback" not in served.stderr
    assert "is damaged" in served.stderr and "visearch repair" in served.stderr
    checked = run_visearch("check", str(flat_index.path))
    assert checked.returncode == 1 and "FAIL index" in checked.stdout
    repaired = run_visearch("repair", str(flat_index.path), "--quiet")
    assert repaired.returncode == 0 and "every part agrees" in repaired.stdout
    (flat_index.path / "CURRENT").write_bytes(b"\x00\x01")
    served = run_visearch("serve", str(flat_index.path), "--port", "0", timeout=120)
    assert served.returncode != 0 and "CURRENT is corrupt" in served.stderr
    assert "Traceback" not in served.stderr


@pytest.fixture()
def small_disk(tmp_path):
    """A 3 MB tmpfs, where this machine lets root mount one."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_during_a_build_is_said_and_keeps_the_served_version(small_disk):
    directory = IndexDirectory(small_disk / "idx")
    import_vectors(directory, clustered(N, DIM), keys(N), precomputed_identity(DIM), OPTIONS)
    big = clustered(40_000, 64, seed=1)[:, :DIM].copy()
    with pytest.raises(DiskFullError, match=f"disk full while writing {directory.path}"):
        import_vectors(directory, big, keys(len(big), N), precomputed_identity(DIM), OPTIONS)
    assert directory.current_version() == 1 and finds_itself(directory)


def test_a_server_reads_the_catalog_on_a_full_disk(small_disk):
    directory = IndexDirectory(small_disk / "idx")
    import_vectors(directory, clustered(N, DIM), keys(N), precomputed_identity(DIM), OPTIONS)
    assert not list(small_disk.glob("idx/catalog.sqlite-*"))  # checkpointed: no WAL left
    # Unbuffered: a buffered file would keep the bytes that did not fit and fail again at
    # close, depending on how the free space happens to align (the manifest's size).
    with open(small_disk / "filler", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 65536)
        except OSError:
            pass
    assert shutil.disk_usage(small_disk).free < 65536
    searcher = Searcher(directory)
    assert finds_itself(directory) and searcher.paths([0]) == {0: keys(1)[0]}
