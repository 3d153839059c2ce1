"""`visearch check`: do CURRENT, the manifest, the index file, the shards and the catalog
agree? Each finding says what is wrong and whether `visearch repair` can mend it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import VisearchError
from index.ann import faiss_index as ann
from index.store.catalog import Catalog
from index.store.directory import IndexDirectory
from index.store.manifest import Manifest
from index.store.vectors import VectorStore, shard_files

REBUILD_FROM_IMAGES = "not repairable here: build again from the images into a new directory"


@dataclass(frozen=True)
class Finding:
    part: str  # catalog, current, manifest, vectors, index, weights, leftovers, runs
    ok: bool
    detail: str
    repair: str = ""  # what `visearch repair` does about it; empty when it cannot

    def line(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        fix = f" [repair: {self.repair}]" if self.repair and not self.ok else ""
        return f"{status} {self.part:9} {self.detail}{fix}"


def check_directory(directory: IndexDirectory) -> list[Finding]:
    """Every part, in the order a reader depends on them; later checks are skipped when an
    earlier part they need is broken."""
    if not directory.path.is_dir() or not directory.has_index_parts():
        raise VisearchError(f"{directory.path} is not a visearch index directory")
    findings: list[Finding] = []
    catalog = _check_catalog(directory, findings)
    manifest = _check_current(directory, findings)
    store = _check_vectors(directory, catalog, manifest, findings) if catalog else None
    if manifest is not None:
        _check_index(directory, catalog, manifest, findings)
        _check_weights(directory, manifest, findings)
    _check_leftovers(directory, catalog, store, findings)
    return findings


def _check_catalog(directory: IndexDirectory, findings: list[Finding]) -> Catalog | None:
    if not directory.catalog_path.exists():
        findings.append(Finding("catalog", False, directory.missing_catalog_message(),
                                ""))
        return None
    try:
        catalog = Catalog(directory.catalog_path, readonly=True)
        errors = catalog.integrity_errors()
        counts = catalog.counts() if not errors else {}
    except VisearchError as exc:
        findings.append(Finding("catalog", False, str(exc), ""))
        return None
    if errors:
        findings.append(Finding("catalog", False, f"SQLite integrity check failed: "
                                f"{'; '.join(errors[:3])}; {REBUILD_FROM_IMAGES}", ""))
        return None
    findings.append(Finding("catalog", True, f"{counts['live']:,} live images, "
                            f"{counts['stored']:,} stored vectors, {counts['failed']:,} failures"))
    return catalog


def _check_current(directory: IndexDirectory, findings: list[Finding]) -> Manifest | None:
    try:
        version = directory.current_version()
    except VisearchError as exc:
        findings.append(Finding("current", False, str(exc).split("; run")[0],
                                "point CURRENT at the newest intact version"))
        return None
    if version is None:
        findings.append(Finding("current", False, "no CURRENT file: no version is published",
                                "point CURRENT at the newest intact version"))
        return None
    try:
        manifest = directory.manifest(version)
    except VisearchError as exc:
        findings.append(Finding("manifest", False, str(exc),
                                "point CURRENT at the newest intact version"))
        return None
    findings.append(Finding("current", True, f"version {version}: {manifest.index.spec}, "
                            f"{manifest.live_count:,} vectors, model {manifest.model.name}"))
    return manifest


def _check_vectors(directory: IndexDirectory, catalog: Catalog, manifest: Manifest | None,
                   findings: list[Finding]) -> VectorStore | None:
    shards = catalog.shards()
    if manifest is None and not shards:
        return None
    dim = manifest.dim if manifest else _stored_dim(directory, catalog)
    try:
        store = directory.vector_store(catalog, dim)
    except VisearchError as exc:
        findings.append(Finding("vectors", False, f"{exc}; {REBUILD_FROM_IMAGES}", ""))
        return None
    expected = catalog.next_id()
    if store.count != expected:
        findings.append(Finding("vectors", False, f"shards hold {store.count:,} vectors but the "
                                f"catalog has ids up to {expected - 1:,}; {REBUILD_FROM_IMAGES}"))
        return None
    findings.append(Finding("vectors", True, f"{len(shards)} shards, {store.count:,} vectors "
                            f"of {dim} dimensions"))
    return store


def _stored_dim(directory: IndexDirectory, catalog: Catalog) -> int:
    from index.store.contract import stored_identity

    identity = stored_identity(catalog)
    return identity.embed_dim if identity else 0


def _check_index(directory: IndexDirectory, catalog: Catalog | None, manifest: Manifest,
                 findings: list[Finding]) -> None:
    rebuild = "rebuild the index from the stored vectors"
    try:
        index = ann.read_index(directory.index_path(manifest))
    except ann.IndexFileError as exc:
        findings.append(Finding("index", False, f"version {manifest.version}: {exc.reason}",
                                rebuild))
        return
    if int(index.ntotal) != manifest.live_count:
        findings.append(Finding("index", False, f"holds {index.ntotal:,} vectors, the manifest "
                                f"says {manifest.live_count:,}", rebuild))
        return
    if catalog is not None:
        max_id = int(manifest.build.get("max_id", catalog.next_id() - 1))
        live = catalog.live_ids(max_id)
        indexed = np.sort(ann.stored_ids(index))
        if not np.array_equal(indexed, live):
            missing = len(np.setdiff1d(live, indexed))
            extra = len(np.setdiff1d(indexed, live))
            findings.append(Finding("index", False, f"ids disagree with the catalog: {missing:,} "
                                    f"live images missing, {extra:,} retired ids present",
                                    rebuild))
            return
    findings.append(Finding("index", True, f"version {manifest.version}: {index.ntotal:,} "
                            f"vectors, ids match the catalog"))


def _check_weights(directory: IndexDirectory, manifest: Manifest,
                   findings: list[Finding]) -> None:
    """A fine-tuned index carries its own weights (`visearch finetune`): the file must be
    there and hash to the checksum its lineage recorded, or the server would embed queries
    with other weights than the stored vectors were made with."""
    lineage = manifest.model.finetune
    if not lineage or not lineage.get("weights_file_sha256"):
        return
    relative = lineage.get("weights_file") or manifest.model.checkpoint or ""
    path = directory.path / relative
    mend = (f"restore {relative} from a backup of {directory.path}, or fine-tune again: "
            f"`visearch finetune {lineage.get('base_index', 'BASE_IDX')} --out NEW_DIR` "
            "with the settings recorded in the manifest")
    if not path.is_file():
        findings.append(Finding("weights", False, f"the fine-tuned weights {relative} are "
                                f"missing; {mend}"))
        return
    found = _file_sha256(path)
    if found != lineage["weights_file_sha256"]:
        findings.append(Finding("weights", False, f"the fine-tuned weights {relative} were "
                                f"modified (sha256 {found[:12]}, the manifest records "
                                f"{lineage['weights_file_sha256'][:12]}); {mend}"))
        return
    findings.append(Finding("weights", True, f"fine-tuned weights {relative} match the "
                            f"manifest's sha256 {found[:12]}"))


def _file_sha256(path: Path) -> str:
    """As embedder.finetune.checkpoint.file_sha256, without importing torch into a check."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_leftovers(directory: IndexDirectory, catalog: Catalog | None,
                     store: VectorStore | None, findings: list[Finding]) -> None:
    stale = [p.name for p in [*directory.path.glob(".*.tmp"),
                              *directory.versions_dir.glob(".*.tmp"),
                              *directory.versions_dir.glob(".staging-*")]]
    if catalog is not None and directory.vectors_dir.is_dir():
        known = shard_files(catalog.shards())
        stale += [p.name for p in directory.vectors_dir.iterdir() if p.name not in known]
    if stale:
        findings.append(Finding("leftovers", False, f"{len(stale)} files of killed writers: "
                    f"{', '.join(sorted(stale)[:5])}", "remove them"))
    if catalog is not None:
        running = catalog.running_runs()
        if running and not directory.is_build_locked():
            findings.append(Finding("runs", False, f"{running} build run(s) marked running "
                                    f"with no build holding the lock (killed)",
                                    "mark them interrupted"))
