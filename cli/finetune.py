"""`visearch finetune`: arguments, the progress bars and the before/after table; the work
is in embedder.finetune."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.args import decode_limits, non_negative_int, positive_int
from embedder.config import default_workers

FINETUNE_HELP = "fine-tune the image tower on an index's own images, re-index, show the gain"
FINETUNE_EPILOG = """\
Self-supervised by default (NT-Xent: two augmented views of an image are positives, the
rest of the batch negatives). With --labels CSV or --labels-from-folders the objective is
supervised contrastive (same label = positive; with --feedback LOG the labels are the
groups that clicks join: a "more like this" query's image and the hits clicked for it, and
hits clicked for the same query), and a label-stratified --holdout share of
each label's images is never trained on: they are the evaluation queries for IDX, a linear
probe on IDX's frozen vectors, and NEW_IDX. --objective self-supervised with labels uses
them for the held-out split and the evaluation only.

NEW_IDX is a normal index: `visearch serve NEW_IDX` loads the fine-tuned weights from
NEW_IDX/finetune/. The text tower is not trained: text queries stay accepted only when
caption retrieval ("a photo of a LABEL") on the held-out images did not get worse.
"""


def add_finetune_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("finetune", help=FINETUNE_HELP, description=FINETUNE_HELP,
                                   epilog=FINETUNE_EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path, help="the index whose images and model to start from")
    parser.add_argument("--out", type=Path, required=True, help="new index directory")
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--labels", type=Path, help="CSV of path,label")
    labels.add_argument("--labels-from-folders", action="store_true",
                        help="each image's folder name is its label")
    labels.add_argument("--feedback", type=Path, metavar="LOG",
                        help="click feedback (the folder of `serve --feedback-log`, or one "
                             ".jsonl file): a clicked hit is a positive of its \"more like "
                             "this\" query image and of the query's other clicked hits")
    parser.add_argument("--objective", choices=["auto", "self-supervised", "supervised"],
                        default="auto", help="auto: supervised with labels, else "
                        "self-supervised (default: auto)")
    parser.add_argument("--holdout", type=float, default=0.3,
                        help="share of each label's images held out (default: 0.3)")
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=positive_int, default=5, help="(default: 5)")
    train.add_argument("--batch-size", type=positive_int, default=64,
                       help="images per step, two views each (default: 64)")
    train.add_argument("--lr", type=float, default=3e-4,
                       help="peak learning rate (default: 3e-4)")
    train.add_argument("--warmup", type=float, default=0.1,
                       help="share of steps warming up, then cosine decay (default: 0.1)")
    train.add_argument("--weight-decay", type=float, default=0.05, help="(default: 0.05)")
    train.add_argument("--temperature", type=float, default=0.1, help="(default: 0.1)")
    train.add_argument("--train-layers", type=_layers, default=2,
                       help="last N image blocks (+ final norm and projection) to train, or "
                            "'all' (default: 2)")
    train.add_argument("--seed", type=int, default=0, help="(default: 0)")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted run in --out from its last epoch")
    parser.add_argument("--text-queries", choices=["auto", "accept", "refuse"], default="auto",
                        help="whether NEW_IDX answers text queries; auto: when the measured "
                             "alignment was kept (default: auto)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                        help="auto: fp16 autocast on CUDA, fp32 on the CPU")
    parser.add_argument("--workers", type=non_negative_int, default=default_workers(),
                        help="decode worker processes (default: %(default)s)")
    parser.add_argument("--max-pixels", type=positive_int, default=40_000_000,
                        help=argparse.SUPPRESS)
    parser.add_argument("--min-side", type=positive_int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--max-file-mb", type=positive_int, default=100, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, dest="json_out", help="write the report here")
    parser.set_defaults(handler=finetune_command)


def _layers(text: str) -> int:
    return -1 if text == "all" else positive_int(text)


def finetune_command(args: argparse.Namespace) -> int:
    from embedder.finetune.config import SELF_SUPERVISED, SUPERVISED, FinetuneSettings
    from embedder.finetune.run import FinetuneJob, finetune_index
    from evaluation.quality import labels_from_folders, read_labels

    labels: dict[str, str] | None = None
    feedback: dict[str, Any] | None = None
    if args.feedback:
        labels, feedback = _feedback_labels(args.feedback, args.index)
    elif args.labels:
        labels = read_labels(args.labels)
    elif args.labels_from_folders:
        labels = _folder_labels(args.index, labels_from_folders)
    objective = args.objective
    if objective == "auto":
        objective = SUPERVISED if labels else SELF_SUPERVISED
    settings = FinetuneSettings(
        objective=objective, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        warmup=args.warmup, weight_decay=args.weight_decay, temperature=args.temperature,
        train_layers=args.train_layers, holdout=args.holdout if labels else 0.0,
        seed=args.seed)
    job = FinetuneJob(index=args.index, out=args.out, settings=settings, labels=labels,
                      feedback=feedback, device=args.device, precision=args.precision,
                      workers=args.workers,
                      resume=args.resume, text_queries=args.text_queries,
                      limits=decode_limits(args))
    report = finetune_index(job)
    if report.train.resumed_after:
        print(f"resumed after epoch {report.train.resumed_after}")
    for path in report.missing[:10]:
        print(f"missing: {path}")
    print(format_table(report.evaluation.rows))
    data = report.to_json()
    (args.out / "finetune" / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    if args.json_out:
        args.json_out.write_text(json.dumps(data, indent=2) + "\n")
    losses = ", ".join(f"{x:.3f}" for x in report.train.losses)
    print(f"fine-tuned on {report.trained_images} images ({objective}, {report.train.epochs_done}"
          f" epochs, loss {losses}; {report.train.seconds / 60:.1f} min, "
          f"{report.train.images_per_s:.1f} images/s); text queries "
          f"{'accepted' if report.text_queries else 'refused'}; {report.build_summary}")
    return 0


def _feedback_labels(log: Path, index: Path) -> tuple[dict[str, str], dict[str, Any]]:
    from embedder.finetune.feedback import feedback_labels

    found = feedback_labels(log, index)
    print(f"feedback: {found.pairs} positive pairs from {found.queries} clicked queries, "
          f"{found.groups} groups of {len(found.labels)} images"
          + (f"; {len(found.skipped_ids)} deleted ids skipped" if found.skipped_ids else ""))
    return found.labels, {"log": str(log.resolve()), "pairs": found.pairs,
                          "queries": found.queries, "groups": found.groups,
                          "images": len(found.labels), "skipped_ids": len(found.skipped_ids)}


def _folder_labels(index: Path, from_folders: Any) -> dict[str, str]:
    from index.store.directory import IndexDirectory

    catalog = IndexDirectory(index).catalog(readonly=True)
    try:
        return dict(from_folders(dict(catalog.live_rows())))
    finally:
        catalog.close()


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """One line per row (IDX, probe, NEW_IDX), one column per metric any row has."""
    preferred = ["map@10", "recall@10", "mrr@10", "dup_recall@1", "dup_recall@10",
                 "text_map@10"]
    present = {name for row in rows.values() for name in row}
    columns = [c for c in preferred if c in present]
    width = max(len(name) for name in rows) if rows else 10
    lines = [" ".join([f"{'':{width}}", *(f"{c:>13}" for c in columns)])]
    for name, row in rows.items():
        cells = [f"{row[c]:>13.3f}" if c in row else f"{'-':>13}" for c in columns]
        lines.append(" ".join([f"{name:{width}}", *cells]))
    return "\n".join(lines)
