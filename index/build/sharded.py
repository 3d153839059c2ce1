"""Sharded index builds: train once, add in N parallel processes, merge with faiss's tools.

autofaiss's recipe for indexes larger than one machine's patience: the coarse
quantizer and PQ codebooks are trained once on a sample; each shard is the
trained (empty) index plus a contiguous id range of the stored vectors, added in
its own process; the parts are then merged by faiss, in memory (``merge_from``)
or into one on-disk inverted-list file (``faiss.contrib.ondisk.merge_ondisk``)
for indexes larger than RAM. Adding is deterministic and the ranges are merged
in id order, so the merged index holds the same ids in the same order per list
as a single-process build: identical search results.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import faiss
import numpy as np

from index.ann import faiss_index as ann
from index.store.catalog import Shard
from index.store.manifest import IndexSettings
from index.store.vectors import VectorStore, sample_ids

log = logging.getLogger("visearch.index")


def train_once(settings: IndexSettings, dim: int, store: VectorStore,
               live: np.ndarray) -> faiss.Index:
    """The trained, empty index every shard starts from."""
    index = ann.new_index(settings, dim)
    ann.train(index, store.get(sample_ids(live, settings.train_size)))
    return index


def split(ids: np.ndarray, parts: int) -> list[np.ndarray]:
    """Contiguous id ranges, in order: merging them in order keeps a single build's lists."""
    return [chunk for chunk in np.array_split(ids, parts) if len(chunk)]


def add_parts(trained: faiss.Index, vectors_dir: Path, shards: Sequence[Shard], dim: int,
              live: np.ndarray, parts: int, workdir: Path) -> list[Path]:
    """Each part of ``live`` added to a copy of ``trained`` in its own process; the
    written part files, in id order."""
    template = workdir / "trained.faiss"
    faiss.write_index(trained, str(template))
    chunks = split(live, parts)
    outs = [workdir / f"part-{i:04d}.faiss" for i in range(len(chunks))]
    threads = max(1, (os.cpu_count() or 1) // len(chunks))
    jobs = [(str(template), str(vectors_dir), list(shards), dim, chunk, str(out), threads)
            for chunk, out in zip(chunks, outs, strict=True)]
    # spawn: a forked child of a process that already ran OpenMP threads can hang in faiss.
    with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_add_part, jobs))
    return outs


def _add_part(job: tuple[str, str, list[Shard], int, np.ndarray, str, int]) -> int:
    template, vectors_dir, shards, dim, ids, out, threads = job
    faiss.omp_set_num_threads(threads)
    index = faiss.read_index(template)
    store = VectorStore(Path(vectors_dir), shards, dim)
    ann.add_batches(index, store.iter_batches(ids), len(ids), progress=False)
    faiss.write_index(index, out)
    return int(index.ntotal)


def merge_in_memory(trained: faiss.Index, parts: Sequence[Path]) -> faiss.Index:
    """The parts' inverted lists appended, in order, to a copy of the trained index."""
    merged = faiss.clone_index(trained)
    ivf = ann.ivf_of(merged)
    for path in parts:
        part = faiss.read_index(str(path))
        ivf.merge_from(ann.ivf_of(part), 0)
    merged.ntotal = ivf.ntotal  # an outer IndexPreTransform counts separately
    return merged


def merge_on_disk(trained: faiss.Index, parts: Sequence[Path], ivfdata: Path) -> faiss.Index:
    """The parts merged into one on-disk inverted-list file ``ivfdata`` (the index then
    names that file; faiss memory-maps it when the index is read)."""
    from faiss.contrib.ondisk import merge_ondisk

    merged = faiss.clone_index(trained)
    merge_ondisk(ann.ivf_of(merged), [str(p) for p in parts], str(ivfdata))
    merged.ntotal = ann.ivf_of(merged).ntotal
    return merged


def build_sharded(settings: IndexSettings, dim: int, store: VectorStore, live: np.ndarray,
                  parts: int, *, ondisk: Path | None = None) -> faiss.Index:
    """Train once, add ``parts`` shards in parallel processes, merge (on disk if given)."""
    trained = train_once(settings, dim, store, live)
    if ann.ivf_of(trained) is None:  # exact indexes have no lists to merge
        ann.add_batches(trained, store.iter_batches(live), len(live), progress=False)
        return trained
    with tempfile.TemporaryDirectory(prefix="visearch-shards-") as tmp:
        part_files = add_parts(trained, store.directory, store.shards, dim, live, parts,
                               Path(tmp))
        log.info("added %d vectors in %d shards; merging", len(live), len(part_files))
        if ondisk is not None:
            return merge_on_disk(trained, part_files, ondisk)
        return merge_in_memory(trained, part_files)


def read_mmap(path: Path) -> faiss.Index:
    """An IVF index whose inverted lists stay in the file, memory-mapped (IO_FLAG_MMAP):
    resident memory grows only with the lists that queries touch."""
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP)


IVFDATA = "index.ivfdata"


class OnDiskMerge:
    """A sharded build published as an on-disk index: trained once, added in ``parts``
    processes into temporary part files; ``write(path)`` merges their lists into
    ``index.ivfdata`` beside the index file at ``path`` (in the version's folder, so the
    version stays whole; readers find it with IO_FLAG_ONDISK_SAME_DIR) and writes the index.
    Such an index is never added to in place: the next build rebuilds it."""

    def __init__(self, settings: IndexSettings, dim: int, store: VectorStore,
                 live: np.ndarray, parts: int):
        self._tmp = tempfile.TemporaryDirectory(prefix="visearch-ondisk-")
        try:
            self.trained = train_once(settings, dim, store, live)
            self.parts = add_parts(self.trained, store.directory, store.shards, dim, live,
                                   max(parts, 1), Path(self._tmp.name))
        except BaseException:
            self._tmp.cleanup()
            raise
        self.ntotal = len(live)

    def write(self, path: Path) -> None:
        ivfdata = path.with_name(IVFDATA)
        merged = merge_on_disk(self.trained, self.parts, ivfdata)
        faiss.write_index(merged, str(path))
        del merged  # unmaps the lists before they are synced and renamed
        for written in (ivfdata, path):
            with open(written, "rb+") as handle:
                os.fsync(handle.fileno())

    def __enter__(self) -> OnDiskMerge:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tmp.cleanup()
