"""Relevance labels from click feedback: what a served ranking is worth to its users.

The feedback log (server.feedback) holds, per answered query, the ids it returned,
and the clicks people made on them. A clicked id counts as relevant for that query,
so the task metrics of evaluation.metrics apply to the logged rankings as they
were served: recall@k (of the clicked hits, the share within the top k), MRR and
nDCG. Queries without a click have no label and are left out (and counted).
The same (query, clicked id) pairs are what a learning loop would train on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.metrics import task_metrics
from server.feedback.log import read_log, read_log_file


@dataclass(frozen=True)
class ClickLabels:
    rankings: list[list[int]] = field(default_factory=list)  # ids as served, per query
    relevants: list[set[int]] = field(default_factory=list)  # clicked ids, per query
    unclicked: int = 0  # logged queries without a click (no label)
    orphan_clicks: int = 0  # clicked ids whose query is not in the log (rotated away)


def click_labels(entries: Iterable[dict[str, Any]]) -> ClickLabels:
    """Join query entries with their clicks; queries in log order."""
    served: dict[str, list[int]] = {}
    clicked: dict[str, set[int]] = {}
    for entry in entries:
        if entry.get("type") == "query":
            served[entry["query_id"]] = [int(i) for i in entry.get("ids", [])]
        elif entry.get("type") == "click":
            clicked.setdefault(entry["query_id"], set()).add(int(entry["hit_id"]))
    labelled = [q for q in served if q in clicked]
    return ClickLabels(rankings=[served[q] for q in labelled],
                       relevants=[clicked[q] for q in labelled],
                       unclicked=len(served) - len(labelled),
                       orphan_clicks=sum(len(ids) for q, ids in clicked.items()
                                         if q not in served))


def read_feedback(path: Path) -> list[dict[str, Any]]:
    """A feedback folder (every rotated file, oldest first) or one .jsonl file."""
    return read_log(path) if path.is_dir() else read_log_file(path)


def feedback_metrics(labels: ClickLabels, ks: Sequence[int]) -> dict[int, dict[str, float]]:
    return task_metrics(labels.rankings, labels.relevants, ks)
