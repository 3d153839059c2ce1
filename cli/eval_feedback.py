"""`visearch eval --feedback LOG`: task metrics with clicks as relevance labels."""

from __future__ import annotations

import argparse
import json
from typing import Any

from common.errors import VisearchError


class FeedbackLogError(VisearchError, ValueError):
    """The --feedback path holds no feedback log."""


def feedback_mode(args: argparse.Namespace) -> int:
    from evaluation.feedback import click_labels, feedback_metrics, read_feedback

    if not args.feedback.exists():
        raise FeedbackLogError(f"{args.feedback}: no such file or folder (give the folder "
                               "of `visearch serve --feedback-log`)")
    labels = click_labels(read_feedback(args.feedback))
    metrics = feedback_metrics(labels, args.k)
    print(f"{len(labels.rankings)} queries with clicks ({labels.unclicked} without, left "
          f"out; {labels.orphan_clicks} clicks on queries no longer in the log)")
    print(f"{'k':>5}  {'recall':>7}  {'MRR':>6}  {'nDCG':>6}")
    for k, m in metrics.items():
        print(f"{k:>5}  {m['recall']:7.3f}  {m['mrr']:6.3f}  {m['ndcg']:6.3f}")
    if args.json_out:
        report: dict[str, Any] = {
            "feedback": str(args.feedback), "queries": len(labels.rankings),
            "unclicked": labels.unclicked, "orphan_clicks": labels.orphan_clicks,
            "metrics": {str(k): m for k, m in metrics.items()}}
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    return 0
