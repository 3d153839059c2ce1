"""`visearch build`: the pipeline list -> decode -> embed -> store -> index over one directory.

Each stage is a function of its own (sources.list_images, ingest.plan,
ingest.ingest, indexing.publish_index) so another runner can drive them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from embedder import DecodeLimits, EmbedderConfig, ModelIdentity
from embedder.config import default_workers
from embedder.errors import VisearchError
from index.catalog import Catalog
from index.directory import IndexDirectory, IndexDirectoryError
from index.indexing import IndexingOptions, IndexingResult, NothingToIndexError, publish_index
from index.plan import IngestStats, plan
from index.sources import list_images
from index.store import ShardWriter
from index.vectors import DEFAULT_SHARD_SIZE, remove_orphans

if TYPE_CHECKING:
    from embedder.embedder import Embedder

log = logging.getLogger("visearch.build")

class ModelMismatchError(VisearchError):
    """The directory holds vectors from another model; mixing them would corrupt the index."""


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


@dataclass
class BuildReport:
    listed: int
    skipped: int  # already in the index, unchanged
    ingest: IngestStats
    ignored: int  # files without an image extension
    indexing: IndexingResult
    seconds: float

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
                f"{m.index.spec}{exact}, version {m.version}; {self.seconds:.1f} s, "
                f"{rate:.1f} images/s" + (" [UNTRAINED model]" if m.model.untrained else ""))


def run_build(cfg: BuildConfig, embedder: Embedder | None = None) -> BuildReport:
    """Embed what is new under ``cfg.inputs`` into ``cfg.out`` and publish a new index version.

    Raises:
        InputError, IndexDirectoryError, ModelMismatchError, NothingToIndexError,
        WeightsUnavailableError: each with a message meant for the user.
    """
    start = time.perf_counter()
    listing = list_images(cfg.inputs)
    directory = IndexDirectory(cfg.out)
    _check_output(directory.path)
    with directory.build_lock():
        catalog = directory.catalog()
        for orphan in remove_orphans(directory.vectors_dir, catalog.shards()):
            log.info("removed %s left by an interrupted build", orphan.name)
        planned = plan(listing.files, catalog)
        if not listing.files and directory.current_version() is None:
            raise NothingToIndexError(f"no image files found in {', '.join(cfg.inputs)}")
        run_id = catalog.start_run()
        stats = IngestStats(failed=list(listing.missing))
        identity = _stored_identity(catalog)
        try:
            if planned.todo:
                from embedder.embedder import load_embedder  # torch: only when needed
                from index.ingest import ingest

                embedder = embedder or load_embedder(cfg.embedder)
                identity = check_identity(catalog, embedder.identity)
                writer = ShardWriter(directory, catalog, run_id, embedder.dim,
                                     cfg.indexing.vector_dtype, cfg.shard_size)
                done = ingest(planned, embedder, writer, batch_size=cfg.batch_size,
                              workers=cfg.workers, limits=cfg.limits,
                              progress=cfg.indexing.progress)
                done.failed[:0] = stats.failed
                stats = done
            catalog.record_failures(stats.failed, run_id)
            if identity is None or catalog.counts()["live"] == 0:
                raise NothingToIndexError(
                    f"no image could be indexed: all {len(stats.failed)} files failed")
            result = publish_index(directory, catalog, identity, cfg.indexing, run_id)
        except BaseException:
            catalog.finish_run(run_id, "failed", embedded=stats.embedded, reused=stats.reused,
                               failed=len(stats.failed))
            raise
        catalog.finish_run(run_id, "done", embedded=stats.embedded, reused=stats.reused,
                           failed=len(stats.failed))
    return BuildReport(len(listing.files), planned.skipped, stats, listing.ignored, result,
                       time.perf_counter() - start)


def _check_output(path: Path) -> None:
    """Refuse paths we cannot write, and non-empty directories that are not an index."""
    if path.exists() and not path.is_dir():
        raise IndexDirectoryError(f"--out {path} exists and is not a directory")
    foreign = path.is_dir() and any(p.name != "build.lock" for p in path.iterdir())
    if foreign and not (path / "catalog.sqlite").exists():
        raise IndexDirectoryError(f"--out {path} is a non-empty directory that is not a visearch "
                                  f"index; choose a new or empty directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IndexDirectoryError(f"cannot create --out {path}: {exc.strerror or exc}") from exc
    if not os.access(path, os.W_OK):
        raise IndexDirectoryError(f"--out {path} is not writable")


MODEL_META_KEY = "model"


def _stored_identity(catalog: Catalog) -> ModelIdentity | None:
    raw = catalog.get_meta(MODEL_META_KEY)
    return None if raw is None else ModelIdentity(**json.loads(raw))


def check_identity(catalog: Catalog, identity: ModelIdentity) -> ModelIdentity:
    """The first build records its model; later ones must use the same weights."""
    stored = _stored_identity(catalog)
    if stored is None:
        catalog.set_meta(MODEL_META_KEY, json.dumps(asdict(identity), sort_keys=True))
        return identity
    if stored.weights_sha256 != identity.weights_sha256:
        raise ModelMismatchError(
            f"this index holds vectors from model {stored.name} ({stored.pretrained or 'custom'}, "
            f"weights {stored.weights_sha256[:12]}); the build loaded {identity.name} "
            f"({identity.pretrained or 'custom'}, weights {identity.weights_sha256[:12]}). "
            f"Use the same --model/--pretrained/--checkpoint, or build into a new --out")
    return stored
