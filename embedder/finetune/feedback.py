"""Training labels from click feedback (`visearch finetune --feedback LOG`).

The feedback log (server.feedback) holds, per answered query, the ids it returned,
and the clicks people made on them. A clicked hit is a positive for its query: for
a "more like this" query (like_id / like_key, logged since the learning loop reads
them) the query is a stored image, so the pair (liked image, clicked image) is a
positive pair; hits clicked for the same query (of any kind) are positives of each
other. Image queries' bytes and vector queries are never logged, so for them only
the co-clicks count. Pairs are joined into groups (connected components), and each
group is one label for the supervised contrastive objective: images of a group are
positives, everything else in the batch negatives; the held-out split and the
evaluation then work as with --labels.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedder.finetune.config import FinetuneError
from index.store.directory import IndexDirectory
from index.store.roots import build_root


@dataclass(frozen=True)
class ClickPairs:
    """Positive pairs of ids from one log, before they are checked against an index."""

    pairs: list[tuple[int, int]] = field(default_factory=list)
    queries: int = 0  # logged queries with at least one click
    clicks: int = 0
    like_keys: dict[str, list[int]] = field(default_factory=dict)  # key -> clicked ids


@dataclass(frozen=True)
class FeedbackLabels:
    labels: dict[str, str]  # absolute path -> group label
    groups: int
    pairs: int
    queries: int
    skipped_ids: list[int]  # deleted since they were served


def click_pairs(entries: Iterable[dict[str, Any]]) -> ClickPairs:
    """(query image, clicked) and (clicked, co-clicked) pairs, in log order."""
    liked: dict[str, int | str] = {}
    clicked: dict[str, list[int]] = {}
    for entry in entries:
        kind, query_id = entry.get("type"), entry.get("query_id")
        if kind == "query" and query_id:
            if entry.get("like_id") is not None:
                liked[query_id] = int(entry["like_id"])
            elif entry.get("like_key"):
                liked[query_id] = str(entry["like_key"])
        elif kind == "click" and query_id and entry.get("hit_id") is not None:
            ids = clicked.setdefault(query_id, [])
            if int(entry["hit_id"]) not in ids:
                ids.append(int(entry["hit_id"]))
    pairs: list[tuple[int, int]] = []
    like_keys: dict[str, list[int]] = {}
    for query_id, ids in clicked.items():
        anchor = liked.get(query_id)
        if isinstance(anchor, int):
            pairs += [(anchor, i) for i in ids if i != anchor]
        elif isinstance(anchor, str):
            like_keys.setdefault(anchor, []).extend(ids)
        pairs += list(zip(ids, ids[1:], strict=False))
    return ClickPairs(pairs, len(clicked), sum(len(v) for v in clicked.values()), like_keys)


def feedback_labels(log: Path, index: Path) -> FeedbackLabels:
    """The groups of clicked images of ``log`` (a feedback folder or one .jsonl file) as
    labels of the images of ``index``.

    Raises:
        FinetuneError: no log there, no usable pair in it, or clicked ids that the index
        never had (the log belongs to another index).
    """
    from evaluation.feedback import read_feedback

    if not log.exists():
        raise FinetuneError(f"--feedback {log}: no such file or folder (give the folder of "
                            "`visearch serve --feedback-log` or one of its .jsonl files)")
    found = click_pairs(read_feedback(log))
    if not found.pairs and not found.like_keys:
        raise FinetuneError(
            f"--feedback {log} holds no training pairs ({found.queries} queries with clicks, "
            f"{found.clicks} clicks): a pair needs a click on a \"more like this\" query or "
            "two clicked hits of one query")
    catalog = IndexDirectory(index).catalog(readonly=True)
    try:
        pairs = list(found.pairs) + _key_pairs(catalog, found.like_keys)
        ids = sorted({i for pair in pairs for i in pair})
        paths = catalog.paths(ids)
        unknown = [i for i in ids if i not in paths]
        if unknown:
            raise FinetuneError(
                f"--feedback {log}: {len(unknown)} clicked or liked ids are not in {index} "
                f"(first: {', '.join(map(str, unknown[:5]))}); the log belongs to another "
                "index: give the log of the server that served this one")
        live = set(catalog.live_among(ids))
    finally:
        catalog.close()
    skipped = [i for i in ids if i not in live]
    groups = _components([(a, b) for a, b in pairs if a in live and b in live])
    if not groups:
        raise FinetuneError(f"--feedback {log}: every clicked image of its pairs has been "
                            f"deleted from {index} since ({len(skipped)} ids)")
    labels = {paths[i]: f"clicks-{min(group)}" for group in groups for i in group}
    return FeedbackLabels(labels, len(groups), len(pairs), found.queries, skipped)


def _key_pairs(catalog: Any, like_keys: dict[str, list[int]]) -> list[tuple[int, int]]:
    """like_key queries: the key is a stored path or key, or a path shown relative to the
    build root; keys no longer in the index are dropped."""
    if not like_keys:
        return []
    found = catalog.ids_for_paths(list(like_keys))
    root = build_root(catalog)
    if root:
        under = {os.path.join(root, k): k for k in like_keys if k not in found}
        for full, i in catalog.ids_for_paths(list(under)).items():
            found[under[full]] = i
    return [(found[k], i) for k, ids in like_keys.items() if k in found
            for i in ids if i != found[k]]


def _components(pairs: list[tuple[int, int]]) -> list[set[int]]:
    """Connected components of the pair graph (union-find), ordered by smallest id."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, set[int]] = {}
    for x in list(parent):
        groups.setdefault(find(x), set()).add(x)
    return [groups[r] for r in sorted(groups)]
