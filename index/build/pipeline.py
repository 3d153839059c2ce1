"""`visearch build`: the pipeline list -> plan -> decode and embed -> write -> publish over
one index directory.

The stages are objects handed in through ``BuildStages`` (local ones by default),
so another runner can drive the same pipeline; the catalog, the shards and the
publish step stay here, with the one writer of the directory.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from embedder import DecodeLimits, EmbedderConfig
from embedder.config import default_workers
from index.ann.tuning import defaults_note
from index.build.ingest import IngestStats, ingest
from index.build.plan import plan
from index.build.publish import (
    IndexingOptions,
    IndexingResult,
    NothingToIndexError,
    publish_index,
)
from index.build.retire import vanished
from index.build.sources import input_roots
from index.build.stages import (
    BatchEmbedder,
    FileLister,
    LocalEmbedder,
    LocalLister,
    WriterFactory,
    shard_writer,
)
from index.store.contract import record_or_check, stored_identity
from index.store.directory import IndexDirectory, IndexDirectoryError
from index.store.metadata import MetadataReport, apply_sidecar, read_sidecar, record_header_fields
from index.store.roots import build_root, widen_root
from index.store.vectors import DEFAULT_SHARD_SIZE, remove_orphans

if TYPE_CHECKING:
    from embedder.embedder import Embedder

log = logging.getLogger("visearch.build")


@dataclass(frozen=True)
class BuildConfig:
    inputs: tuple[str, ...]
    out: Path
    embedder: EmbedderConfig = EmbedderConfig()
    limits: DecodeLimits = DecodeLimits()
    batch_size: int = 64
    workers: int = field(default_factory=default_workers)
    indexing: IndexingOptions = IndexingOptions()
    shard_size: int = DEFAULT_SHARD_SIZE
    prune: bool = False  # retire indexed files under the inputs that no longer exist
    metadata: Path | None = None  # a CSV / JSON Lines sidecar of user fields by path
    decode: str = "auto"  # JPEGs on the GPU when the model is on CUDA (embedder.gpu_pipeline)
    compile: bool = False  # torch.compile the GPU path's fp16 image tower


@dataclass(frozen=True)
class BuildStages:
    """The injected stages. ``embedder`` is a factory: the model loads only when a file
    needs embedding, so a rebuild with nothing new starts in well under a second."""

    lister: FileLister
    embedder: Callable[[], BatchEmbedder]
    writer: WriterFactory


def local_stages(cfg: BuildConfig, embedder: Embedder | None = None) -> BuildStages:
    """Everything in this process; ``embedder`` reuses a loaded model."""
    def make_embedder() -> BatchEmbedder:
        from embedder.embedder import load_embedder  # torch: only when needed

        return LocalEmbedder(embedder or load_embedder(cfg.embedder), cfg.batch_size,
                             cfg.workers, cfg.limits, cfg.decode, cfg.compile)

    return BuildStages(LocalLister(), make_embedder,
                       shard_writer(cfg.indexing.vector_dtype, cfg.shard_size))


@dataclass
class BuildReport:
    listed: int
    skipped: int  # already in the index, unchanged
    ingest: IngestStats
    ignored: int  # files without an image extension
    indexing: IndexingResult
    seconds: float
    missing_on_disk: int = 0  # indexed files under the inputs that no longer exist
    pruned: int = 0  # of those, retired by --prune
    metadata: MetadataReport | None = None  # what --metadata wrote

    @property
    def vanished_note(self) -> str:
        if self.pruned:
            return f"; removed {self.pruned} vanished files"
        if self.missing_on_disk:
            return (f"; {self.missing_on_disk} indexed files are missing on disk "
                    f"(--prune or `visearch sync` removes them)")
        return ""

    @property
    def failed(self) -> list[tuple[str, str]]:
        return self.ingest.failed

    def summary(self) -> str:
        m = self.indexing.manifest
        rate = self.ingest.embedded / self.ingest.seconds if self.ingest.seconds else 0.0
        exact = " (exact)" if m.index.exact else ""
        skipped = self.skipped + self.ingest.unchanged
        return (f"indexed {self.ingest.stored} new ({self.ingest.embedded} embedded, "
                f"{self.ingest.reused} duplicates reused), skipped {skipped}"
                f" already present, failed {len(self.failed)}; {m.live_count} vectors in "
                f"{m.index.spec}{exact}, version {m.version}{defaults_note(m)}; "
                f"{self.seconds:.1f} s, "
                f"{rate:.1f} images/s"
                + self.vanished_note
                + (f"; {self.metadata.summary()}" if self.metadata else "")
                + ("; rebuilt the unreadable index from the stored vectors"
                   if self.indexing.repaired else "")
                + (" [UNTRAINED model]" if m.model.untrained else ""))


def run_build(cfg: BuildConfig, embedder: Embedder | None = None,
              stages: BuildStages | None = None) -> BuildReport:
    """Embed what is new under ``cfg.inputs`` into ``cfg.out`` and publish a new index version.

    Raises:
        InputError, IndexDirectoryError, ModelMismatchError, NothingToIndexError,
        WeightsUnavailableError: each with a message meant for the user.
    """
    start = time.perf_counter()
    stages = stages or local_stages(cfg, embedder)
    sidecar = read_sidecar(cfg.metadata) if cfg.metadata else None  # its errors come first
    meta_report = None
    listing = stages.lister.list(cfg.inputs)
    directory = IndexDirectory(cfg.out)
    _check_output(directory.path)
    with directory.writing() as catalog:
        for orphan in remove_orphans(directory.vectors_dir, catalog.shards()):
            log.info("removed %s left by an interrupted build", orphan.name)
        planned = plan(listing.files, catalog)
        if not listing.files and directory.current_version() is None:
            unusable = f"; {len(listing.missing)} could not be read" if listing.missing else ""
            raise NothingToIndexError(f"no image files found in {', '.join(cfg.inputs)}"
                                      f"{unusable}", failed=listing.missing)
        widen_root(catalog, (f.path for f in listing.files))
        run_id = catalog.start_run()
        stats = IngestStats(failed=list(listing.missing))
        identity = stored_identity(catalog)
        gone = vanished(catalog, input_roots(cfg.inputs), {f.path for f in listing.files})
        try:
            if cfg.prune and gone:
                catalog.retire([i for i, _ in gone], run_id)
                log.info("retired %d indexed files that no longer exist", len(gone))
            if planned.todo:
                batch_embedder = stages.embedder()
                identity = record_or_check(catalog, batch_embedder.identity)
                writer = stages.writer(directory, catalog, run_id, batch_embedder.dim)
                done = ingest(planned, batch_embedder, writer, progress=cfg.indexing.progress)
                done.failed[:0] = stats.failed
                stats = done
            catalog.record_failures(stats.failed, run_id)
            record_header_fields(catalog, progress=cfg.indexing.progress)
            if sidecar is not None:
                meta_report = apply_sidecar(catalog, sidecar, build_root(catalog))
            if identity is None or catalog.counts()["live"] == 0:
                raise NothingToIndexError(
                    f"no image could be indexed: all {len(stats.failed)} files failed",
                    failed=stats.failed, listed=len(listing.files))
            result = publish_index(directory, catalog, identity, cfg.indexing, run_id)
        except BaseException:
            catalog.finish_run(run_id, "failed", embedded=stats.embedded, reused=stats.reused,
                               failed=len(stats.failed))
            raise
        catalog.finish_run(run_id, "done", embedded=stats.embedded, reused=stats.reused,
                           failed=len(stats.failed))
    return BuildReport(len(listing.files), planned.skipped, stats, listing.ignored, result,
                       time.perf_counter() - start, len(gone), len(gone) if cfg.prune else 0,
                       meta_report)


def _check_output(path: Path) -> None:
    """Refuse paths we cannot write, and non-empty directories that are not an index."""
    if path.exists() and not path.is_dir():
        raise IndexDirectoryError(f"--out {path} exists and is not a directory")
    foreign = path.is_dir() and any(p.name != "build.lock" for p in path.iterdir())
    if foreign and not (path / "catalog.sqlite").exists():
        if IndexDirectory(path).has_index_parts():
            raise IndexDirectoryError(IndexDirectory(path).missing_catalog_message())
        raise IndexDirectoryError(f"--out {path} is a non-empty directory that is not a visearch "
                                  f"index; choose a new or empty directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IndexDirectoryError(f"cannot create --out {path}: {exc.strerror or exc}") from exc
    if not os.access(path, os.W_OK):
        raise IndexDirectoryError(f"--out {path} is not writable")
