"""Searching on several GPUs (`visearch serve --gpus replicate|shard|N`).

``replicate`` puts a full copy of the index on each GPU (faiss IndexReplicas: queries
are spread over the copies; more QPS, each GPU needs the whole index); ``shard`` splits
the vectors over the GPUs (faiss IndexShards: every query visits every GPU; an index
``n`` times larger fits). ``N`` alone means replicate on the first N GPUs;
``replicate:N`` / ``shard:N`` limit the count likewise.

Only the plain top-k search runs on the GPUs; filtered searches (IDSelector), id
listings and re-ranking keep the CPU index, which stays loaded. Where faiss has no GPU
(the faiss-cpu build, or no device) the setting falls back to the CPU with one log
line; where a GPU copy cannot be made or cannot take per-call parameters, that version
is searched on the CPU and the log says why.
"""

from __future__ import annotations

import logging

import faiss
import numpy as np

from index.ann import faiss_index as ann
from index.ann.gpu_setting import GpuServing
from index.store.manifest import IndexSettings

# faiss's GPU k-selection handles k (and nprobe) up to this; deeper searches use the
# CPU index, which stays loaded.
GPU_MAX_K = 2048

log = logging.getLogger("visearch.index")

_serving = GpuServing()
_gpus = 0


def configure(serving: GpuServing) -> GpuServing:
    """Set how this process searches from now on; returns what will actually be used (off
    when faiss has no GPU, said once in the log)."""
    global _serving, _gpus
    _gpus = ann.gpu_count()
    if serving.wanted and _gpus == 0:
        log.warning("--gpus %s: faiss sees no GPU (%s); searching on the CPU", serving,
                    "a GPU build without a device" if hasattr(faiss, "StandardGpuResources")
                    else "faiss-cpu build")
        serving = GpuServing()
    elif serving.wanted:
        used = min(serving.count or _gpus, _gpus)
        log.info("--gpus %s: index %s over %d of %d GPU(s)", serving,
                 "replicated" if serving.mode == "replicate" else "sharded", used, _gpus)
    _serving = serving
    return serving


def place(index: faiss.Index, settings: IndexSettings) -> faiss.Index | None:
    """The GPU form of ``index`` for plain searches, or None to search on the CPU."""
    if not _serving.wanted or _gpus == 0:
        return None
    gpus = list(range(min(_serving.count or _gpus, _gpus)))
    try:
        options = faiss.GpuMultipleClonerOptions()
        options.shard = _serving.mode == "shard"
        table_bytes = (settings.pq_m or 0) * (2 ** (settings.nbits or 8)) * 4
        options.useFloat16 = table_bytes > ann.GPU_SHARED_MEMORY_BYTES
        gpu = faiss.index_cpu_to_gpus_list(index, co=options, gpus=gpus)
        _smoke(gpu, index, settings)
    except (RuntimeError, AttributeError, TypeError) as exc:
        log.warning("--gpus %s: faiss cannot search %s on the GPU (%s); this version is "
                    "searched on the CPU", _serving, settings.spec, exc)
        return None
    return gpu


def _smoke(gpu: faiss.Index, cpu: faiss.Index, settings: IndexSettings) -> None:
    """One search with per-call parameters, as the Searcher makes them: a GPU form that
    cannot take them raises here, at load, rather than in a request."""
    query = np.zeros((1, cpu.d), np.float32)
    query[0, 0] = 1.0
    nprobe = settings.default_nprobe if ann.ivf_of(cpu) is not None else None
    gpu.search(query, 1, params=ann.search_parameters(gpu, nprobe))
