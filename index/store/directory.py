"""The index directory: versioned manifests and indexes over a shared catalog and vector store.

Layout::

    DIR/CURRENT                     name of the served version, replaced atomically
    DIR/catalog.sqlite              ids -> files, shards, failures, runs
    DIR/vectors/shard-NNNNNN.npy    raw embeddings, append-only
    DIR/versions/vNNNNNN/           manifest.json + index.faiss, immutable once published
    DIR/build.lock                  held by the one build allowed at a time

A build writes a complete new version next to the served one and then swaps
CURRENT, so a killed build never leaves a half-written index behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from common.errors import VisearchError
from index.store.atomic import (
    fsync_dir,
    reporting_disk_full,
    write_bytes_atomic,
    write_json_atomic,
)
from index.store.catalog import Catalog
from index.store.manifest import Manifest, ManifestError, read_manifest, utc_now
from index.store.vectors import VectorStore

KEEP_VERSIONS = 3


class IndexDirectoryError(VisearchError):
    """The directory is not an index, is busy, or cannot be written."""


class IndexDirectory:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def catalog_path(self) -> Path:
        return self.path / "catalog.sqlite"

    @property
    def vectors_dir(self) -> Path:
        return self.path / "vectors"

    @property
    def versions_dir(self) -> Path:
        return self.path / "versions"

    def version_dir(self, version: int) -> Path:
        return self.versions_dir / f"v{version:06d}"

    def catalog(self, *, readonly: bool = False) -> Catalog:
        if not self.catalog_path.exists() and (self.path / "CURRENT").exists():
            raise IndexDirectoryError(self.missing_catalog_message())
        return Catalog(self.catalog_path, readonly=readonly)

    def current_version(self) -> int | None:
        try:
            raw = (self.path / "CURRENT").read_bytes()
        except FileNotFoundError:
            return None
        name = raw.decode("ascii", errors="replace").strip()
        if not (name.startswith("v") and name[1:].isdigit()):
            raise IndexDirectoryError(f"{self.path}/CURRENT is corrupt ({raw[:40]!r}); run "
                                      f"`visearch repair {self.path}` to point it at the "
                                      f"newest intact version")
        return int(name[1:])

    def has_index_parts(self) -> bool:
        """True when any part of an index is here, even if the catalog is gone."""
        return any((self.path / name).exists() for name in ("CURRENT", "versions", "vectors",
                                                            "catalog.sqlite"))

    def missing_catalog_message(self) -> str:
        return (f"{self.catalog_path} is missing: the index files remain but the mapping of "
                f"ids to images is lost and cannot be rebuilt from them; build again from "
                f"the images into a new directory (`visearch build PATH... --out NEW`)")

    def manifest(self, version: int | None = None) -> Manifest:
        """The manifest of ``version``, by default the one CURRENT names."""
        if version is None:
            version = self.current_version()
            if version is None:
                raise IndexDirectoryError(
                    f"{self.path} is not a built index (no CURRENT file); run `visearch build`")
        try:
            return read_manifest(self.version_dir(version) / "manifest.json")
        except ManifestError as exc:
            raise IndexDirectoryError(str(exc)) from exc

    def index_path(self, manifest: Manifest) -> Path:
        return self.version_dir(manifest.version) / manifest.index_file

    def vector_store(self, catalog: Catalog, dim: int) -> VectorStore:
        return VectorStore(self.vectors_dir, catalog.shards(), dim)

    @contextlib.contextmanager
    def build_lock(self, holder: str = "", *, create: bool = False) -> Iterator[None]:
        """One writer at a time per directory (a build, a delete, a ``--writable`` server); a
        second one fails at once, naming the holder recorded in the lock file.

        Only a writer that makes a new index (``create``) may bring the directory into
        being: a maintenance command on a mistyped path must not leave a folder behind."""
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not self.path.is_dir():
            raise IndexDirectoryError(f"{self.path} does not exist")
        handle = open(self.path / "build.lock", "a+")
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                handle.seek(0)
                who = handle.read().strip()
                raise IndexDirectoryError(
                    f"another build is writing {self.path}" + (f": {who}" if who else "")
                    + ("; stop that server or send it the change over gRPC (Upsert/Delete)"
                       if "--writable" in who else "")) from exc
            handle.seek(0)
            handle.truncate()
            handle.write(holder or f"a build or delete (pid {os.getpid()})")
            handle.flush()
            self.remove_leftovers()
            yield
        finally:
            handle.close()

    @contextlib.contextmanager
    def writing(self, *, published: bool = False, create: bool = False) -> Iterator[Catalog]:
        """The single writer's session: the build lock, a full disk said as such, the
        catalog open with killed runs marked interrupted, and closed (its log folded in)
        at the end, whatever happens.

        Args:
            published: refuse a directory with no published version yet.
            create: make the directory when it does not exist (a first build or import).
        """
        if published and self.current_version() is None:
            raise IndexDirectoryError(f"{self.path} is not a built index (no CURRENT file)")
        with self.build_lock(create=create), reporting_disk_full(self.path):
            catalog = self.catalog()
            try:
                catalog.mark_interrupted()
                yield catalog
            finally:
                catalog.close()

    def is_build_locked(self) -> bool:
        """Whether a build (or a repair) holds the lock right now."""
        lock = self.path / "build.lock"
        if not lock.exists():
            return False
        with open(lock) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
        return False

    def remove_leftovers(self) -> list[Path]:
        """Temporary files of writers that were killed (the build lock is held: none is live)."""
        stale = [*self.path.glob(".*.tmp"), *self.versions_dir.glob(".*.tmp")]
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def next_version(self) -> int:
        existing = [int(p.name[1:]) for p in self._version_dirs()]
        return max(existing, default=0) + 1

    def publish(self, manifest: Manifest, write_index: Callable[[Path], None]) -> None:
        """Write ``manifest`` and its index as a new version, then make it CURRENT."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        final = self.version_dir(manifest.version)
        staging = self.versions_dir / f".staging-{final.name}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            write_index(staging / manifest.index_file)
            write_json_atomic(staging / "manifest.json", manifest.to_json())
            os.replace(staging, final)
            fsync_dir(self.versions_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        write_bytes_atomic(self.path / "CURRENT", f"{final.name}\n".encode())
        self.prune()

    def republish(self, manifest: Manifest, **index_changes: Any) -> Manifest:
        """A new version with changed search defaults and the same index file (hard-linked)."""
        source = self.index_path(manifest)
        updated = replace(manifest.with_index(**index_changes), version=self.next_version(),
                          created=utc_now())

        def link(target: Path) -> None:
            # An on-disk index's lists (index.ivfdata) travel with it.
            for src, dst in ((source, target), (source.with_name("index.ivfdata"),
                                                target.with_name("index.ivfdata"))):
                if src != source and not src.exists():
                    continue
                try:
                    os.link(src, dst)
                except OSError:  # another file system, or no hard links: copy
                    shutil.copyfile(src, dst)

        self.publish(updated, link)
        return updated

    def prune(self, keep: int = KEEP_VERSIONS) -> None:
        """Drop old versions and abandoned staging directories (the build lock is held)."""
        for stale in self.versions_dir.glob(".staging-*"):
            shutil.rmtree(stale, ignore_errors=True)
        current = self.current_version()
        versions = sorted(self._version_dirs(), key=lambda p: int(p.name[1:]))
        for old in versions[:-keep]:
            if current is None or int(old.name[1:]) != current:
                shutil.rmtree(old, ignore_errors=True)

    def _version_dirs(self) -> list[Path]:
        if not self.versions_dir.is_dir():
            return []
        return [p for p in self.versions_dir.iterdir()
                if p.is_dir() and p.name.startswith("v") and p.name[1:].isdigit()]
