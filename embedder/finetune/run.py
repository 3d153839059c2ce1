"""`visearch finetune IDX --out NEW_IDX`: read IDX's images and model, train the image
tower, write the weights into NEW_IDX, re-embed every image there with them, and measure
IDX and NEW_IDX on the same held-out images."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from embedder.config import DecodeLimits, EmbedderConfig, ModelIdentity
from embedder.finetune.checkpoint import (
    CONFIG_FILE,
    FINETUNE_DIR,
    STATE_FILE,
    WEIGHTS_FILE,
    open_clip_model_cfg,
    write_model,
)
from embedder.finetune.config import SUPERVISED, FinetuneError, FinetuneSettings
from embedder.finetune.data import ViewPairs, label_ids
from embedder.finetune.evaluate import Evaluation, measure_after, measure_before
from embedder.finetune.split import split_paths
from embedder.finetune.train import TrainResult, train
from index.store.contract import check_same_model, require_model
from index.store.directory import IndexDirectory

log = logging.getLogger("visearch.finetune")

TEXT_MODES = ("auto", "accept", "refuse")
ALIGNMENT_TOLERANCE = 0.02  # text mAP@10 may drop this much and still count as kept


@dataclass(frozen=True)
class FinetuneJob:
    """One `visearch finetune` run. ``labels`` maps absolute paths to labels."""

    index: Path
    out: Path
    settings: FinetuneSettings = FinetuneSettings()
    labels: dict[str, str] | None = None
    feedback: dict[str, Any] | None = None  # where click labels came from (the lineage)
    device: str = "auto"
    precision: str = "auto"
    workers: int = 0
    resume: bool = False
    text_queries: str = "auto"
    ks: tuple[int, ...] = (1, 10)
    limits: DecodeLimits = DecodeLimits()
    progress: bool = True


@dataclass
class FinetuneReport:
    out: Path
    missing: list[str]
    trained_images: int
    train: TrainResult
    evaluation: Evaluation
    text_queries: bool
    weights_sha256: str
    build_summary: str
    seconds: float
    lineage: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"out": str(self.out), "missing": self.missing,
                "trained_images": self.trained_images, "train": asdict(self.train),
                "evaluation": self.evaluation.to_json(), "text_queries": self.text_queries,
                "weights_sha256": self.weights_sha256, "build": self.build_summary,
                "seconds": self.seconds, "lineage": self.lineage}


def finetune_index(job: FinetuneJob) -> FinetuneReport:
    """Run the whole job; see the module docstring.

    Raises:
        FinetuneError, IndexDirectoryError, NoModelError, WeightsUnavailableError, LabelsError.
    """
    from embedder.embedder import Embedder
    from embedder.models import load_model
    from index.build.pipeline import BuildConfig, run_build
    from index.build.publish import IndexingOptions

    started = time.perf_counter()
    source = IndexDirectory(job.index)
    base = source.manifest().model
    require_model(base, "fine-tuning")
    paths, missing = _catalogued_files(source)
    labels = {p: lab for p, lab in (job.labels or {}).items() if p in set(paths)}
    if job.settings.objective == SUPERVISED and not labels:
        raise FinetuneError("the supervised objective needs labels of indexed images "
                            "(--labels CSV or --labels-from-folders)")
    train_paths, train_labels, held = split_paths(paths, labels, job.settings.holdout,
                                                  job.settings.seed)
    if len(train_paths) < 2:
        raise FinetuneError(f"{len(train_paths)} images to train on; fine-tuning needs more")
    work = _prepare_out(job, source)

    base_cfg = base.embedder_config(device=job.device, precision=job.precision,
                                    base_dir=job.index)
    loaded = load_model(base_cfg)
    embedder = Embedder(loaded, base_cfg)
    check_same_model(base, embedder.identity)
    before = measure_before(embedder, source, paths, labels, held, job.settings.seed, job.ks,
                            job.limits)
    supervised = job.settings.objective == SUPERVISED
    data = ViewPairs(train_paths, label_ids(train_paths, train_labels if supervised else {}),
                     embedder.transform, before.augment, job.settings.seed,
                     draft_size=2 * embedder.image_size, limits=job.limits)
    result = train(embedder.model, data, job.settings, work / STATE_FILE, base.weights_sha256,
                   device=embedder.device, precision=embedder.precision, workers=job.workers,
                   resume=job.resume, progress=job.progress)
    file_sha = write_model(work, embedder.model, open_clip_model_cfg(loaded.resolved.model_name),
                           embedder.identity.preprocess)
    del embedder, loaded

    tuned_cfg = EmbedderConfig(model=base.name, pretrained=base.pretrained,
                               checkpoint=str(work / WEIGHTS_FILE), device=job.device,
                               precision=job.precision)
    tuned = Embedder(load_model(tuned_cfg), tuned_cfg)
    alignment = before.text_alignment_after(tuned)
    accepted = _accepts_text(job.text_queries, alignment)
    lineage = {
        "base": asdict(base), "base_index": str(job.index.resolve()),
        "settings": job.settings.to_json(), "weights_file": f"{FINETUNE_DIR}/{WEIGHTS_FILE}",
        "config_file": f"{FINETUNE_DIR}/{CONFIG_FILE}", "weights_file_sha256": file_sha,
        "trained_images": len(train_paths), "heldout_images": len(held),
        "heldout_labels": len(set(held.values())), "epochs_done": result.epochs_done,
        "train_seconds": round(result.seconds, 1), "text_queries": accepted,
        "text_alignment": alignment,
    }
    if job.feedback is not None:
        lineage["feedback"] = job.feedback
    tuned.identity = _tuned_identity(tuned.identity, base, lineage)
    inputs = work / "inputs.txt"
    inputs.write_text("".join(f"{p}\n" for p in paths))
    build = run_build(BuildConfig(inputs=(f"@{inputs}",), out=job.out, embedder=tuned_cfg,
                                  limits=job.limits, workers=job.workers,
                                  indexing=IndexingOptions(progress=job.progress)),
                      embedder=tuned)
    evaluation = measure_after(before, tuned, IndexDirectory(job.out), train_labels,
                               job.settings)
    return FinetuneReport(job.out, missing, len(train_paths), result, evaluation, accepted,
                          tuned.identity.weights_sha256, build.summary(),
                          time.perf_counter() - started, lineage)


def _catalogued_files(source: IndexDirectory) -> tuple[list[str], list[str]]:
    """(files that still exist, catalogued paths that do not), both sorted."""
    catalog = source.catalog(readonly=True)
    try:
        rows = sorted(path for _, path in catalog.live_rows())
    finally:
        catalog.close()
    present = [p for p in rows if os.path.isfile(p)]
    missing = sorted(set(rows) - set(present))
    if missing:
        log.warning("%d catalogued images no longer exist and are skipped (first: %s)",
                    len(missing), missing[0])
    return present, missing


def _prepare_out(job: FinetuneJob, source: IndexDirectory) -> Path:
    """``NEW_IDX/finetune``, after refusing an --out that is IDX, a finished index or
    a foreign directory; the catalog is created so the build accepts the directory."""
    out = IndexDirectory(job.out)
    if out.path.resolve() == source.path.resolve():
        raise FinetuneError("--out must be a new directory, not the index being fine-tuned")
    work = out.path / FINETUNE_DIR
    if out.path.is_dir() and any(out.path.iterdir()):
        if not (work / STATE_FILE).exists():
            raise FinetuneError(f"--out {out.path} is not empty and holds no interrupted "
                                f"fine-tune; choose a new directory")
        if not job.resume:
            raise FinetuneError(f"--out {out.path} holds an interrupted fine-tune; pass "
                                f"--resume to continue it, or choose a new directory")
    work.mkdir(parents=True, exist_ok=True)
    out.catalog().close()
    return work


def _accepts_text(mode: str, alignment: dict[str, float] | None) -> bool:
    if mode not in TEXT_MODES:
        raise FinetuneError(f"--text-queries must be one of {', '.join(TEXT_MODES)}")
    if mode != "auto":
        return mode == "accept"
    return alignment is not None and \
        alignment["after"] >= alignment["before"] - ALIGNMENT_TOLERANCE


def _tuned_identity(loaded: ModelIdentity, base: ModelIdentity,
                    lineage: dict[str, Any]) -> ModelIdentity:
    """What NEW_IDX records: the fine-tuned weights' checksum with a checkpoint path
    relative to the index, the base's weight tag (its preprocessing) and the lineage."""
    return replace(loaded, pretrained=base.pretrained, checkpoint=lineage["weights_file"],
                   finetune=lineage)
