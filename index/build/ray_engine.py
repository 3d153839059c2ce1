"""`visearch build --engine ray`: decoding and embedding on Ray Data, writing on the driver.

Ray Data reads, hashes and decodes files in CPU tasks and embeds them in an
actor pool (one model per actor, on its GPU when it has one); the vectors come
back to the driver in input order as ``DecodedBatch``es whose ``pixels`` are
already the vectors, and ``RayEmbedder.encode`` hands them through. Everything
after that is the local pipeline: ``plan.decide`` (dedup), the one
``ShardWriter`` (catalog + shards) and publish, so a Ray build is resumable,
incremental and atomic like a local one. A task whose worker dies is retried by
Ray; its result reaches the writer once, since only the driver writes.

Ray decides nothing about ids: files are numbered on the driver and every row
carries its number back, so the same folder gives the same ids on both engines.
Files with duplicate content are embedded on the cluster before the driver's
dedup sees them (the model's cost of a duplicate; the index stores one vector).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from common.errors import VisearchError
from embedder.config import DecodeLimits, EmbedderConfig, ModelIdentity
from embedder.inputs import ModelInput
from index.store.catalog import ImageRecord

if TYPE_CHECKING:
    import torch

    from embedder.files import DecodedBatch
    from index.build.pipeline import BuildConfig, BuildStages

log = logging.getLogger("visearch.build")
# Decode tasks take half a CPU so a small machine still runs the embed actors beside them.
DECODE_CPUS = 0.5


def ray_embedder(config: EmbedderConfig, limits: DecodeLimits, options: RayOptions
                 ) -> RayEmbedder:
    """Load the model once on the driver (its identity and preprocessing), embed on Ray."""
    from embedder.embedder import load_embedder

    local = load_embedder(config)
    return RayEmbedder(config, local.identity, local.model_input(limits), options)


class RayUnavailableError(VisearchError):
    """Ray is not installed, or the cluster cannot be reached."""


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # None: start a local Ray on this machine
    workers: int = 2  # embed actors
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 0.5
    batch_size: int = 64
    # Retries are Ray Data's own: a decode task whose worker dies is retried (Ray's task
    # default, 3 times) and an embed actor is restarted and its batch retried. Passing
    # max_retries / max_restarts through map_batches(**ray_remote_args) is deprecated and
    # removed in Ray 2.64, which offers no named parameter for them.
    crash_once: Path | None = None  # fault drill: the first decode task to claim it exits


def ensure_ray(address: str | None) -> Any:
    """The connected ``ray`` module; a local Ray (loopback only) when ``address`` is None."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError("--engine ray needs Ray: pip install 'visearch[ray]'") from exc
    if not ray.is_initialized():
        try:
            if address is None:
                ray.init(include_dashboard=False, log_to_driver=False,
                         _node_ip_address="127.0.0.1")
            else:
                ray.init(address=address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RayUnavailableError(f"cannot reach Ray at {address}: {exc}") from exc
    return ray


def _decode(batch: dict[str, np.ndarray], *, to_input: ModelInput,
            crash_once: str | None) -> dict[str, np.ndarray]:
    """CPU task: read, hash and decode files; failures are rows with an error."""
    from embedder.files import load_file

    if crash_once and _claim(crash_once):
        os._exit(17)  # the worker dies mid-task: Ray must retry this batch elsewhere
    shas, errors, pixels = [], [], []
    for path in batch["path"]:
        done, tensor = load_file(_Ref(str(path)), to_input)
        shas.append(done.sha256 or "")
        errors.append(done.error or "")
        pixels.append(None if tensor is None else tensor.numpy())
    shape = next((p.shape for p in pixels if p is not None), (3, 1, 1))
    stacked = np.stack([p if p is not None else np.zeros(shape, np.float32) for p in pixels])
    return {"row": batch["row"], "path": batch["path"], "sha256": np.array(shas),
            "error": np.array(errors), "pixels": stacked}


def _claim(marker: str) -> bool:
    try:
        os.unlink(marker)
        return True
    except FileNotFoundError:
        return False


@dataclass(frozen=True)
class _Ref:
    path: str


class _EmbedActor:
    """One model per actor, loaded once; on the actor's GPU when Ray gave it one."""

    def __init__(self, embedder: EmbedderConfig):
        import torch

        from embedder.embedder import load_embedder

        torch.set_num_threads(1)
        self.embedder = load_embedder(embedder)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        ok = batch["error"] == ""
        vectors = np.zeros((len(ok), self.embedder.dim), dtype=np.float32)
        if ok.any():
            vectors[ok] = self.embedder.encode_images(torch.from_numpy(batch["pixels"][ok]))
        return {"row": batch["row"], "sha256": batch["sha256"], "error": batch["error"],
                "vector": vectors}


@dataclass
class RayEmbedder:
    """A ``BatchEmbedder`` whose batches come back from Ray already embedded."""

    config: EmbedderConfig
    identity: ModelIdentity
    to_input: ModelInput  # the driver's model's decoding and preprocessing (picklable)
    options: RayOptions
    dim: int = field(init=False)

    def __post_init__(self) -> None:
        self.dim = self.identity.embed_dim

    def decoded(self, files: Sequence[ImageRecord]) -> Iterator[DecodedBatch]:
        import torch

        from embedder.files import DecodedBatch, DecodedFile

        if not files:
            return
        ray = ensure_ray(self.options.address)
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        opts = self.options
        dataset = ray.data.from_items(
            [{"row": i, "path": f.path} for i, f in enumerate(files)],
            override_num_blocks=max(1, min(len(files) // opts.batch_size + 1, 200)))
        dataset = dataset.map_batches(
            _decode, batch_size=opts.batch_size, num_cpus=DECODE_CPUS,
            fn_kwargs={"to_input": self.to_input,
                       "crash_once": str(opts.crash_once) if opts.crash_once else None})
        dataset = dataset.map_batches(
            _EmbedActor, batch_size=opts.batch_size,
            compute=ray.data.ActorPoolStrategy(size=opts.workers),
            num_cpus=opts.cpus_per_worker, num_gpus=opts.gpus_per_worker or None,
            fn_constructor_kwargs={"embedder": self.config})
        expected = 0
        for batch in dataset.iter_batches(batch_size=opts.batch_size, batch_format="numpy"):
            rows = batch["row"].tolist()
            if rows != list(range(expected, expected + len(rows))):
                raise RayUnavailableError(f"Ray returned rows out of order at {expected}")
            expected += len(rows)
            done = [DecodedFile(files[r], sha or None, err or None)
                    for r, sha, err in zip(rows, batch["sha256"].tolist(),
                                           batch["error"].tolist(), strict=True)]
            ok = batch["error"] == ""
            yield DecodedBatch(done, torch.from_numpy(np.ascontiguousarray(batch["vector"][ok])))
        if expected != len(files):
            raise RayUnavailableError(f"Ray returned {expected} of {len(files)} files")

    def encode(self, pixels: torch.Tensor) -> np.ndarray:
        """The rows are vectors already (embedded by the actors)."""
        return pixels.numpy().astype(np.float32, copy=False)


def ray_stages(cfg: BuildConfig, options: RayOptions) -> BuildStages:
    """The local lister and writer around a Ray embedder (``run_build(cfg, stages=...)``)."""
    from index.build.pipeline import BuildStages
    from index.build.stages import LocalLister, shard_writer

    return BuildStages(LocalLister(), lambda: ray_embedder(cfg.embedder, cfg.limits, options),
                       shard_writer(cfg.indexing.vector_dtype, cfg.shard_size))
