"""The index directory on its own: versions, CURRENT, pruning, hard-linked republish, the lock."""

from __future__ import annotations

import json
import os

import pytest

from index.store.contract import precomputed_identity
from index.store.directory import KEEP_VERSIONS, IndexDirectory, IndexDirectoryError
from index.store.manifest import FORMAT_VERSION, IndexSettings, Manifest, utc_now


def manifest(version: int) -> Manifest:
    return Manifest(version=version, created=utc_now(), model=precomputed_identity(8),
                    index=IndexSettings(spec="IVF4,PQ2", exact=False, auto=False, nlist=4,
                                        default_nprobe=2, refine_factor=4),
                    vector_dtype="float16", live_count=3, stored_count=3, failed_count=0)


def publish(directory: IndexDirectory, version: int, payload: bytes = b"index") -> None:
    directory.publish(manifest(version), lambda path: path.write_bytes(payload))


def test_an_empty_directory_has_no_current_version(tmp_path):
    directory = IndexDirectory(tmp_path / "idx")
    assert directory.current_version() is None
    with pytest.raises(IndexDirectoryError, match="not a built index"):
        directory.manifest()


def test_publish_writes_a_version_and_moves_current(tmp_path):
    directory = IndexDirectory(tmp_path / "idx")
    publish(directory, 1, b"first")
    publish(directory, 2, b"second")
    assert directory.current_version() == 2
    assert (tmp_path / "idx" / "CURRENT").read_text() == "v000002\n"
    current = directory.manifest()
    assert current.version == 2 and current.index == manifest(2).index
    assert directory.index_path(current).read_bytes() == b"second"
    assert directory.manifest(1).version == 1 and directory.next_version() == 3
    on_disk = json.loads((directory.version_dir(2) / "manifest.json").read_text())
    assert on_disk["format_version"] == FORMAT_VERSION


def test_a_failed_publish_leaves_current_alone(tmp_path):
    directory = IndexDirectory(tmp_path / "idx")
    publish(directory, 1)

    def broken(path):
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        directory.publish(manifest(2), broken)
    assert directory.current_version() == 1
    assert not directory.version_dir(2).exists()
    assert not list(directory.versions_dir.glob(".staging-*"))


def test_old_versions_are_pruned_but_never_the_current_one(tmp_path):
    directory = IndexDirectory(tmp_path / "idx")
    for version in range(1, KEEP_VERSIONS + 3):
        publish(directory, version)
    kept = sorted(p.name for p in directory.versions_dir.iterdir())
    assert kept == [f"v{v:06d}" for v in range(3, KEEP_VERSIONS + 3)]


def test_republish_shares_the_index_file(tmp_path):
    directory = IndexDirectory(tmp_path / "idx")
    publish(directory, 1, b"trained")
    updated = directory.republish(directory.manifest(), default_nprobe=3, refine_factor=1)
    assert updated.version == 2 and directory.current_version() == 2
    assert directory.manifest().index.default_nprobe == 3
    assert directory.manifest().index.spec == "IVF4,PQ2"
    old, new = directory.index_path(manifest(1)), directory.index_path(updated)
    assert os.stat(old).st_ino == os.stat(new).st_ino


def test_corrupt_current_and_manifest_are_reported(tmp_path):
    directory = IndexDirectory(tmp_path / "idx")
    publish(directory, 1)
    (tmp_path / "idx" / "CURRENT").write_text("latest\n")
    with pytest.raises(IndexDirectoryError, match="CURRENT is corrupt"):
        directory.manifest()
    (tmp_path / "idx" / "CURRENT").write_text("v000001\n")
    (directory.version_dir(1) / "manifest.json").write_text("{not json")
    with pytest.raises(IndexDirectoryError, match="cannot read manifest"):
        directory.manifest()


def test_one_build_lock_at_a_time(tmp_path):
    directory = IndexDirectory(tmp_path / "idx")
    with pytest.raises(IndexDirectoryError, match="does not exist"):
        with directory.build_lock():  # only a writer that creates an index makes the folder
            pass
    assert not directory.path.exists()
    with directory.build_lock(create=True):
        with pytest.raises(IndexDirectoryError, match="another build"):
            with directory.build_lock():
                pass
    with directory.build_lock():  # released
        pass
