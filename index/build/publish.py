"""The build's last stage: stored vectors -> a new published ANN index version."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import faiss
import numpy as np

from common.errors import VisearchError
from embedder import ModelIdentity
from index import drift
from index.ann import faiss_index as ann
from index.ann.params import FLAT_BELOW, IndexOverrides, choose_settings
from index.ann.search import Searcher
from index.ann.tuning import DEFAULT_TARGET, TuneConfig, tune_searcher, tuned_fields
from index.store.catalog import Catalog
from index.store.directory import IndexDirectory
from index.store.manifest import IndexSettings, Manifest, utc_now
from index.store.vectors import VectorStore, sample_ids

log = logging.getLogger("visearch.index")


class NothingToIndexError(VisearchError):
    """No image could be stored, so there is no index to build.

    Carries what the build found out on the way, so a caller can still show each
    file's failure: when every file fails, those reasons are all the user gets.
    """

    def __init__(self, message: str, *, failed: Sequence[tuple[str, str]] = (),
                 listed: int = 0):
        super().__init__(message)
        self.failed = list(failed)
        self.listed = listed


@dataclass(frozen=True)
class IndexingOptions:
    overrides: IndexOverrides = IndexOverrides()
    vector_dtype: str = "float16"
    use_gpu: bool = True
    retrain: bool = False
    progress: bool = True
    keep_spec: bool = False  # deletes: keep the trained index even if the rule would now differ
    index_shards: int = 1  # >1: train once, add in this many processes, merge (sharded.py)
    ondisk: bool = False  # IVF: publish the lists merged into index.ivfdata (sharded.OnDiskMerge)
    tune: bool = True  # measure nprobe/refine against exact search before publishing
    target_recall: float | None = None  # None: the previous version's target, else 0.95
    refine_store: str | None = None  # "mmap" | "ram"; None: the previous version's choice
    tune_time_cap_s: float = TuneConfig.time_cap_s  # past it the best setting so far is kept


@dataclass(frozen=True)
class IndexingResult:
    manifest: Manifest
    published: bool  # False when the current version was already up to date
    retrained: bool
    seconds: float
    faiss_device: str
    repaired: bool = False  # the previous index file was unreadable and was rebuilt


def settings_for(n: int, dim: int, previous: Manifest | None,
                 overrides: IndexOverrides) -> IndexSettings:
    """Explicit overrides win; otherwise keep a user-chosen spec; otherwise the automatic rule.

    Tuned defaults (nprobe, refine) survive an incremental build while the spec is unchanged.
    """
    if overrides.any or previous is None:
        settings = choose_settings(n, dim, overrides)
    elif not previous.index.auto:
        settings = choose_settings(n, dim, IndexOverrides(spec=previous.index.spec))
    else:
        settings = choose_settings(n, dim)
        if previous.index.spec == f"IVF{settings.nlist},SQ8" != settings.spec:
            # An automatic SQ8 index of the rule before RaBitQ keeps its codes while its
            # lists stay: that rule change alone does not retrain it; a new nlist does.
            # (Older automatic IVF-PQ indexes still move to the rule: their recall was
            # the reason it changed.)
            settings = replace(choose_settings(n, dim, IndexOverrides(
                spec=previous.index.spec)), auto=True)
    if previous is not None and previous.index.spec == settings.spec:
        old = previous.index
        settings = replace(settings, default_nprobe=old.default_nprobe,
                           refine_factor=old.refine_factor, target_recall=old.target_recall,
                           tuned_recall=old.tuned_recall, tuned_k=old.tuned_k,
                           tune_queries=old.tune_queries, tuned_vectors=old.tuned_vectors)
    if previous is not None:
        settings = replace(settings, refine_store=previous.index.refine_store)
    return settings


def with_options(settings: IndexSettings, options: IndexingOptions) -> IndexSettings:
    """The re-rank store and target the user named, over what the rule or the last build
    chose."""
    if options.refine_store is not None and not settings.exact:
        settings = replace(settings, refine_store=options.refine_store)
    if options.target_recall is not None and options.tune:
        settings = replace(settings, target_recall=options.target_recall)
    return settings


def publish_index(directory: IndexDirectory, catalog: Catalog, identity: ModelIdentity,
                  options: IndexingOptions, run_id: int) -> IndexingResult:
    """Build (or update) the ANN index over all live vectors and make it the current version."""
    start = time.perf_counter()
    # An on-disk build's part files live until it is published (or, on an error, collected).
    stack = contextlib.ExitStack()
    write: Callable[[Path], None] | None = None
    previous = directory.manifest() if directory.current_version() is not None else None
    live = catalog.live_ids()
    if len(live) == 0:
        raise NothingToIndexError("no image could be indexed")
    if options.keep_spec and previous is not None and not options.retrain:
        settings = previous.index
    else:
        settings = settings_for(len(live), identity.embed_dim, previous, options.overrides)
    settings = with_options(settings, options)
    if settings.exact and settings.auto:
        log.info("%d vectors: below %d an exact flat index is used (IVF-PQ needs more "
                 "training points)", len(live), FLAT_BELOW)
    store = directory.vector_store(catalog, identity.embed_dim)
    max_id = int(live[-1])
    ondisk = options.ondisk and not settings.exact
    # An on-disk index is rebuilt, never added to: its lists are the old version's file.
    reusable = (previous is not None and not options.retrain and not ondisk
                and not previous.build.get("ondisk")
                and previous.index.spec == settings.spec
                and previous.model.weights_sha256 == identity.weights_sha256)
    repaired = False
    if reusable and previous is not None:
        try:
            index = ann.read_index(directory.index_path(previous))
        except ann.IndexFileError as exc:
            log.warning("index file of version %d is unreadable (%s): rebuilding it from the "
                        "stored vectors", previous.version, exc.reason)
            reusable, repaired = False, True
    if reusable and previous is not None:
        settings = replace(settings, train_size=previous.index.train_size)
        prev_max = int(previous.build.get("max_id", -1))
        removed = catalog.deleted_since(int(previous.build.get("run_id", 0)))
        added = live[live > prev_max]
        if len(added) == 0 and len(removed) == 0 and previous.index == settings:
            return IndexingResult(previous, False, False, time.perf_counter() - start, "cpu")
        if len(removed):
            index.remove_ids(faiss.IDSelectorBatch(removed))
        ann.add_batches(index, store.iter_batches(added), len(added), progress=options.progress)
        device = "cpu"
    elif ondisk:
        from index.build.sharded import OnDiskMerge

        merge = stack.enter_context(OnDiskMerge(settings, identity.embed_dim, store, live,
                                                options.index_shards))
        index, device, write = merge.trained, "cpu", merge.write
    else:
        index, device = _train_and_add(settings, identity.embed_dim, store, live, options)
    counts = catalog.counts()
    manifest = Manifest(
        version=directory.next_version(),
        created=utc_now(),
        model=identity,
        index=settings,
        vector_dtype=options.vector_dtype,
        live_count=merge.ntotal if ondisk else int(index.ntotal),
        stored_count=counts["stored"],
        failed_count=counts["failed"],
        build={"run_id": run_id, "max_id": max_id, "retrained": not reusable,
               "faiss_device": device, "faiss_version": faiss.__version__,
               "index_seconds": round(time.perf_counter() - start, 3),
               **({"ondisk": True} if ondisk else {})},
        # An on-disk build's index holds no lists until written: its profile needs them.
        drift={} if ondisk else drift.measure(index, store, live, settings.default_nprobe),
    )
    # An on-disk build's index object holds no lists until it is written: not tuned.
    if options.tune and not settings.exact and not ondisk:
        manifest = _tuned(directory, manifest, index, catalog, options)
    elif settings.tuned_recall is not None:
        # Defaults carried from the last build stay; its measurement was of another index.
        manifest = replace(manifest, index=replace(settings, tuned_recall=None, tuned_k=None,
                                                   tune_queries=None, tuned_vectors=None))
    directory.publish(manifest, write or (lambda path: _write_index(index, path)))
    stack.close()
    return IndexingResult(manifest, True, not reusable, time.perf_counter() - start, device,
                          repaired)


def _train_and_add(settings: IndexSettings, dim: int, store: VectorStore, live: np.ndarray,
                   options: IndexingOptions) -> tuple[faiss.Index, str]:
    if options.index_shards > 1 and not settings.exact:
        from index.build.sharded import build_sharded

        return build_sharded(settings, dim, store, live, options.index_shards), "cpu"
    index = ann.new_index(settings, dim)
    placement = ann.GpuPlacement(options.use_gpu)
    index = placement.to_device(index, settings)
    if not index.is_trained:
        ann.train(index, store.get(sample_ids(live, settings.train_size)))
    ann.add_batches(index, store.iter_batches(live), len(live), progress=options.progress)
    return placement.to_cpu(index), "gpu" if placement.used else "cpu"


def _tuned(directory: IndexDirectory, manifest: Manifest, index: faiss.Index,
           catalog: Catalog, options: IndexingOptions) -> Manifest:
    """``manifest`` with the cheapest nprobe and refine that reach the target recall,
    measured on this very index before it is published."""
    began = time.perf_counter()
    target = manifest.index.target_recall or DEFAULT_TARGET
    searcher = Searcher(directory, parts=(manifest, index, catalog))
    tuned = tune_searcher(searcher, TuneConfig(target=target,
                                               time_cap_s=options.tune_time_cap_s))
    log.info("tuned: %s", tuned.summary())
    build = {**manifest.build, "tune_seconds": round(time.perf_counter() - began, 3),
             "tune_trials": len(tuned.trials), "tune_capped": tuned.capped}
    return replace(manifest.with_index(**tuned_fields(tuned)), build=build)


def _write_index(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
