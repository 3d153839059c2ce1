"""`visearch compact`: rewrite vector shards without the rows of deleted images.

Deleted images keep their catalog rows (ids are never reused) but their vectors
only cost disk. A shard with dead rows is rewritten as a compacted shard holding
the live rows and, beside it, their ids; its id range stays, so every id keeps
meaning the same image. Each rewrite is one atomic file pair plus one catalog
update; the old file is removed after the commit (a killed compaction leaves
only files that the next writer removes as orphans). The published index already
excludes deleted ids, so no new version is needed unless ``retrain`` asks for one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.errors import VisearchError
from index.build.publish import IndexingOptions, IndexingResult, publish_index
from index.store.atomic import write_atomic
from index.store.catalog import Shard
from index.store.contract import stored_identity
from index.store.directory import IndexDirectory
from index.store.vectors import (
    COMPACTED_PREFIX,
    ids_file,
    is_compacted,
    remove_orphans,
)


@dataclass
class CompactReport:
    shards_rewritten: int
    vectors_removed: int
    bytes_before: int
    bytes_after: int
    indexing: IndexingResult | None  # when retrained

    def summary(self) -> str:
        if not self.shards_rewritten:
            text = "nothing to compact: no shard holds vectors of deleted images"
        else:
            freed = (self.bytes_before - self.bytes_after) / 1e6
            text = (f"compacted {self.shards_rewritten} shards: removed "
                    f"{self.vectors_removed:,} vectors of deleted images, {freed:,.1f} MB "
                    f"freed; ids unchanged")
        if self.indexing is not None:
            m = self.indexing.manifest
            text += f"; retrained {m.index.spec} as version {m.version}"
        return text


def compact(directory: IndexDirectory, *, retrain: bool = False,
            progress: bool = True) -> CompactReport:
    """Rewrite every shard that holds deleted rows; optionally retrain the index after."""
    with directory.writing(published=True) as catalog:
        remove_orphans(directory.vectors_dir, catalog.shards())
        identity = stored_identity(catalog)
        if identity is None:
            raise VisearchError("no model is recorded in the catalog: nothing to compact")
        store = directory.vector_store(catalog, identity.embed_dim)
        live = catalog.live_ids()
        report = CompactReport(0, 0, _size(directory.vectors_dir), 0, None)
        for shard in catalog.shards():
            keep = live[(live >= shard.first_id) & (live < shard.first_id + shard.count)]
            held = _rows_held(directory.vectors_dir, shard)
            if len(keep) == held:
                continue
            dtype = store.dtype_of(shard.shard)
            new_file = _write_compacted(directory.vectors_dir, shard, keep,
                                        store.raw(keep, dtype))
            catalog.replace_shard_file(shard.shard, new_file)
            report.shards_rewritten += 1
            report.vectors_removed += held - len(keep)
        remove_orphans(directory.vectors_dir, catalog.shards())  # the replaced files
        report.bytes_after = _size(directory.vectors_dir)
        if retrain:
            run_id = catalog.start_run()
            report.indexing = publish_index(
                directory, catalog, identity,
                IndexingOptions(retrain=True, progress=progress), run_id)
            catalog.finish_run(run_id, "compacted", embedded=0, reused=0, failed=0)
    return report


def _rows_held(folder: Path, shard: Shard) -> int:
    if is_compacted(shard.file):
        return len(np.load(folder / ids_file(shard.file), mmap_mode="r"))
    return shard.count


def _write_compacted(folder: Path, shard: Shard, ids: np.ndarray, vectors: np.ndarray) -> str:
    """The live rows of ``shard`` (as stored, bit for bit) and their ids."""
    # A new name per rewrite: the old file stays valid until the catalog points away.
    name = f"{COMPACTED_PREFIX}{shard.shard:06d}-{shard.first_id + shard.count}-{len(ids)}.npy"

    def save(array: np.ndarray):  # type: ignore[no-untyped-def]
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as handle:
                np.save(handle, array)
        return write

    write_atomic(folder / name, save(np.ascontiguousarray(vectors)))
    write_atomic(folder / ids_file(name), save(np.asarray(ids, dtype=np.int64)))
    return name


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) \
        if folder.is_dir() else 0
