"""FAISS index construction and per-call search parameters; GPU when faiss has one."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from tqdm import tqdm

from common.errors import VisearchError
from index.ann import coarse
from index.ann.params import EXACT_SPECS, IndexSpecError
from index.store.manifest import IndexSettings

log = logging.getLogger("visearch.index")

# GPU IVF-PQ keeps its lookup tables in shared memory; above this they need float16.
GPU_SHARED_MEMORY_BYTES = 48 * 1024
# RaBitQ query bits, recorded in the index file: 4 (faiss 1.15's default; 0 in 1.13) and 8
# reach the same recall at 1M clip-cone, and 4 ran 15-30% faster (docs/measurements.md,
# section 4, "RaBitQ codes"); set here so an index does not depend on the faiss that made it.
RABITQ_QUERY_BITS = 4


def gpu_count() -> int:
    """GPUs faiss can use; 0 for faiss-cpu builds."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


class IndexFileError(VisearchError):
    """An index file faiss cannot read: truncated, zeroed or missing."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


# `visearch serve --mmap`: indexes are read memory-mapped (set once at server start).
_SERVE_MMAP = False


def set_serve_mmap(on: bool) -> None:
    global _SERVE_MMAP
    _SERVE_MMAP = on


def serve_mmap() -> bool:
    return _SERVE_MMAP


def read_flags(path: Path, mmap: bool) -> int:
    """On-disk inverted lists (an ``index.ivfdata`` beside the index file) are found in the
    index file's own folder, wherever the version was renamed to, and are always mapped
    (IO_FLAG_MMAP on them crashes faiss 1.15); ``mmap`` maps an in-RAM-format file's lists
    instead of reading them (read-only: never for an index that is added to)."""
    ondisk = path.with_name("index.ivfdata").exists()
    return faiss.IO_FLAG_ONDISK_SAME_DIR | (faiss.IO_FLAG_MMAP if mmap and not ondisk else 0)


def read_index(path: Path, mmap: bool = False) -> faiss.Index:
    """The index at ``path``; IndexFileError (with the repair command) when unreadable.
    ``mmap``: memory-mapped (see read_flags)."""
    if not path.is_file():
        raise IndexFileError(f"index file {path} is missing; run `visearch repair "
                             f"{path.parents[2]}` to rebuild it from the stored vectors",
                             "missing")
    try:
        return faiss.read_index(str(path), read_flags(path, mmap))
    except RuntimeError as exc:
        reason = _faiss_reason(str(exc))
        raise IndexFileError(f"index file {path} is damaged ({reason}); run `visearch "
                             f"repair {path.parents[2]}` to rebuild it from the stored "
                             f"vectors", reason) from exc


def _faiss_reason(message: str) -> str:
    """The useful tail of a faiss exception ("read error ...: 5 != 1024"), not its C++ frame."""
    tail = re.sub(r"^Error in .*? at \S+:\d+: ", "", message.strip())
    tail = tail.split("failed: ", 1)[-1].removeprefix("Error: ").strip()
    return (tail.splitlines()[0] if tail else "unreadable")[:160]


def new_index(settings: IndexSettings, dim: int) -> faiss.Index:
    """An empty index for ``settings`` that accepts our int64 ids."""
    spec = "Flat" if settings.spec.strip() in EXACT_SPECS else settings.spec
    try:
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise IndexSpecError(f"faiss cannot build index spec {settings.spec!r}: {exc}") from exc
    ivf = ivf_of(index)
    if ivf is None:
        return faiss.IndexIDMap2(index)  # IVF stores ids itself; others need the map
    if hasattr(ivf, "do_polysemous_training"):  # IVF-PQ
        # Polysemous codes serve Hamming-threshold search, which we never use, and
        # their training is 4/5 of the IVF-PQ training time.
        ivf.do_polysemous_training = False
    if hasattr(ivf, "qb"):  # RaBitQ: query bits, stored in the index file
        ivf.qb = RABITQ_QUERY_BITS
    return index


def ivf_of(index: faiss.Index) -> Any:
    """The IVF index inside ``index`` (downcast to its concrete type), or None."""
    try:
        return faiss.downcast_index(faiss.extract_index_ivf(index))
    except (RuntimeError, AttributeError):
        return None


def depth_dependent_scan(index: faiss.Index) -> bool:
    """Whether the first n results of ``index`` may depend on how many were asked for beyond
    n: faiss's multi-bit RaBitQ scan filters candidates by the heap's k-th score
    (index.ann.search.Searcher.candidates)."""
    ivf = ivf_of(index)
    if ivf is None or not hasattr(faiss, "IndexIVFRaBitQ"):
        return False
    if isinstance(ivf, faiss.IndexIVFRaBitQFastScan):  # its scan refines estimates too
        return True
    return isinstance(ivf, faiss.IndexIVFRaBitQ) and int(ivf.rabitq.nb_bits) > 1  # type: ignore[attr-defined]


def search_parameters(index: faiss.Index, nprobe: int | None) -> faiss.SearchParameters | None:
    """Per-call parameters: never mutate a shared index's nprobe (a data race).

    The caller has checked that ``index`` is IVF (``Searcher.check_params``).
    """
    if nprobe is None:
        return None
    params = faiss.SearchParametersIVF(nprobe=int(nprobe))  # type: ignore[call-arg]
    if isinstance(faiss.downcast_index(index), faiss.IndexPreTransform):
        outer = faiss.SearchParametersPreTransform(index_params=params)  # type: ignore[call-arg]
        outer.referenced_objects = [params]  # type: ignore[attr-defined]  # SWIG keeps a bare pointer
        return outer
    return params


class GpuPlacement:
    """Moves an index to GPU 0 for train/add and back; falls back to the CPU once, loudly."""

    def __init__(self, want_gpu: bool):
        self.enabled = want_gpu and gpu_count() > 0
        self.used = False
        self._resources: Any = None
        self._clustering: Any = None

    def to_device(self, index: faiss.Index, settings: IndexSettings) -> faiss.Index:
        if not self.enabled or settings.exact:
            return index
        ivf = ivf_of(index)
        if ivf is not None and coarse.hnsw_of(ivf) is not None:
            # A GPU IVF keeps its centroids in a flat quantizer: the HNSW graph would come
            # back flat, and its two-level training is CPU code (index.ann.coarse).
            log.info("%s has an HNSW coarse quantizer; training and adding on the CPU",
                     settings.spec)
            return index
        try:
            if self._resources is None:
                self._resources = faiss.StandardGpuResources()
            options = faiss.GpuClonerOptions()
            table_bytes = (settings.pq_m or 0) * (2 ** (settings.nbits or 8)) * 4
            options.useFloat16 = table_bytes > GPU_SHARED_MEMORY_BYTES
            gpu_index = faiss.index_cpu_to_gpu(self._resources, 0, index, options)
        except (RuntimeError, AttributeError) as exc:
            kmeans = self._gpu_kmeans(ivf)
            log.warning("faiss GPU cannot take %s (%s); %s on the CPU", settings.spec, exc,
                        "its coarse k-means runs on the GPU, coding and adding" if kmeans
                        else "training and adding")
            self.enabled = False
            return index
        self.used = True
        return gpu_index

    def _gpu_kmeans(self, ivf: Any) -> bool:
        """Coarse k-means on the GPU for an IVF index faiss cannot copy there (RaBitQ codes):
        the k-means is most of the training time, and faiss trains with any flat index."""
        if ivf is None or ivf.is_trained or self._resources is None:
            return False
        try:
            flat = faiss.IndexFlatIP(ivf.d) if ivf.metric_type == faiss.METRIC_INNER_PRODUCT \
                else faiss.IndexFlatL2(ivf.d)
            self._clustering = faiss.index_cpu_to_gpu(self._resources, 0, flat)
        except (RuntimeError, AttributeError):
            return False
        ivf.clustering_index = self._clustering  # kept alive by self: SWIG holds a pointer
        return True

    def to_cpu(self, index: faiss.Index) -> faiss.Index:
        return faiss.index_gpu_to_cpu(index) if self.used else index


def add_batches(index: faiss.Index, batches: Iterable[tuple[np.ndarray, np.ndarray]],
                total: int, *, progress: bool = True) -> None:
    with tqdm(total=total, unit="vec", desc="index", disable=not progress or None,
              leave=False) as bar:
        for ids, vectors in batches:
            index.add_with_ids(vectors, ids)
            bar.update(len(ids))


def train(index: faiss.Index, sample: np.ndarray) -> None:
    """Train ``index`` on ``sample``; an HNSW coarse quantizer first gets its centroids from
    two-level k-means (index.ann.coarse), then faiss trains the codes only."""
    if index.is_trained:
        return
    log.info("training on %d vectors", len(sample))
    ivf = ivf_of(index)
    if ivf is not None:
        coarse.train_coarse(ivf, sample)
    index.train(sample)
    if ivf is not None and ivf.clustering_index is not None:
        ivf.clustering_index = None  # a GPU k-means index (GpuPlacement) lives no longer


def stored_ids(index: faiss.Index) -> np.ndarray:
    """Every id stored in an IVF index or an IDMap."""
    ivf = ivf_of(index)
    if ivf is None:
        id_map = faiss.downcast_index(index).id_map  # type: ignore[attr-defined]
        return faiss.vector_to_array(id_map).astype(np.int64)
    invlists = ivf.invlists
    parts = [faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
             for i in range(invlists.nlist) if invlists.list_size(i)]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
