"""The re-ranking stage of one query: ANN candidates -> filter / exclude -> min score ->
collapse -> page, with metadata behind MetadataProvider.

A query without any of these options never comes here (the service's batched path
answers it). Exclusions are part of the allowed-id mask, so they never cost results:
the top k is taken among the images that may be returned.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from index.ann.query import MAX_CANDIDATES, InvalidQueryError, SearchParams
from index.rerank import collapse as collapsing
from index.rerank.columns import MetadataProvider
from index.rerank.filtered import (
    DEFAULT_STRATEGY,
    FilterStrategy,
    _reading,
    held_mask,
    top_among,
)
from index.rerank.masks import Allowed, cache_of

if TYPE_CHECKING:
    from index.ann.search import Searcher


@dataclass(frozen=True)
class Rerank:
    """The re-ranking options of a query; the defaults change nothing."""

    filter: str | None = None
    exclude_ids: tuple[int, ...] = ()
    exclude_keys: tuple[str, ...] = ()
    min_score: float | None = None
    collapse: float | None = None  # cosine threshold; None: no collapse
    offset: int = 0
    fields: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self != Rerank()


@dataclass
class RankedHit:
    id: int
    score: float
    collapsed_ids: list[int] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class Ranked:
    hits: list[RankedHit]
    strategy: str  # exact, selector, post, ann (no filter) or none (nothing matches)
    matched: int  # images the filter and exclusions allow (-1: not counted, no filter)
    more: bool  # a next page may exist


def provider(searcher: Searcher) -> MetadataProvider:
    """The searcher's metadata provider, made on first use."""
    found = getattr(searcher, "_metadata_provider", None)
    if found is None:
        found = MetadataProvider(searcher.catalog)
        searcher._metadata_provider = found  # type: ignore[attr-defined]
    return found


def check(searcher: Searcher, spec: Rerank, params: SearchParams) -> None:
    """Refuse bad options before any search: InvalidQueryError (FilterError: position)."""
    if spec.offset + params.k > MAX_CANDIDATES:
        raise InvalidQueryError(f"offset + k = {spec.offset + params.k:,} is over the limit "
                                f"of {MAX_CANDIDATES:,} ranked results")
    if spec.collapse is not None and not -1.0 <= spec.collapse <= 1.0:
        raise InvalidQueryError(f"collapse threshold must be a cosine in [-1, 1], "
                                f"not {spec.collapse}")
    if spec.min_score is not None and not math.isfinite(spec.min_score):
        raise InvalidQueryError("min_score must be a finite number")
    if spec.filter is not None:
        provider(searcher).compile(spec.filter)
    if spec.fields:
        provider(searcher).get([], spec.fields)


def allowed_ids(searcher: Searcher, spec: Rerank) -> np.ndarray | None:
    """The mask of ids that may be returned, or None when every held id may."""
    found = allowed_for(searcher, spec)
    return None if found is None else found.mask


def allowed_for(searcher: Searcher, spec: Rerank) -> Allowed | None:
    """The ids that may be returned with their count (index/rerank/masks.py: cached per
    filter and version unless the query excludes ids), or None when every held id may."""
    if spec.filter is None and not spec.exclude_ids and not spec.exclude_keys:
        return None
    held = held_mask(searcher)
    if spec.filter is not None:
        matches = provider(searcher).mask(spec.filter, len(held))
        base = cache_of(searcher).get(spec.filter, (searcher.ntotal, searcher.store.count),
                                      held, matches)
        if not spec.exclude_ids and not spec.exclude_keys:
            return base
        mask = base.mask.copy()
    else:
        mask = held.copy()
    excluded = [i for i in spec.exclude_ids if 0 <= i < len(mask)]
    excluded += resolve_keys(searcher, spec.exclude_keys).values()
    mask[np.asarray(excluded, np.int64)] = False
    return Allowed.of(mask)


def resolve_keys(searcher: Searcher, keys: tuple[str, ...]) -> dict[str, int]:
    """Live ids of keys: stored keys (paths, upsert keys) or paths as shown to clients
    (relative to the build root)."""
    if not keys:
        return {}
    found = searcher.catalog.ids_for_paths(keys)
    if searcher.root:
        under = {os.path.join(searcher.root, k): k for k in keys if k not in found}
        for full, i in searcher.catalog.ids_for_paths(under).items():
            found[under[full]] = i
    return found


def rank(searcher: Searcher, q: np.ndarray, params: SearchParams, spec: Rerank,
         strategy: FilterStrategy = DEFAULT_STRATEGY, force: str | None = None) -> Ranked:
    """The page [offset, offset + k) of the re-ranked list for the (1, dim) unit query."""
    allowed = allowed_for(searcher, spec)
    matched = allowed.count if allowed is not None else -1
    need = spec.offset + params.k
    groups, how = widened(lambda depth: _candidates(searcher, q, params, allowed, depth,
                                                    strategy, force), searcher, spec, need)
    page = groups[spec.offset:need]
    if spec.collapse is not None:  # over earlier pages' groups too: a copy near two kept
        # hits belongs to the better-ranked one, whichever page asks
        collapsing.near_copies(searcher, groups[:need], spec.collapse, q,
                               _may_return(searcher, allowed), spec.min_score,
                               lambda: _reading(searcher))
    hits = [RankedHit(g.id, g.score, g.members) for g in page]
    if spec.fields:
        rows = provider(searcher).get([h.id for h in hits], spec.fields)
        for hit, row in zip(hits, rows, strict=True):
            hit.fields = row
    return Ranked(hits, how, matched, more=len(groups) >= need)


def widened(find: Callable[[int], tuple[list[tuple[int, float]], str]], collapse_on: Any,
            spec: Rerank, need: int) -> tuple[list[collapsing.Group], str]:
    """``need`` groups from ``find(depth)`` (allowed candidates in rank order, the strategy
    used), searching 4x deeper while min score and collapse leave too few and more exist.
    One index (``rank``) and several (index/rerank/multi.py) share it."""
    depth = need if spec.collapse is None else min(need * 4, MAX_CANDIDATES)
    while True:
        ranked, how = find(depth)
        if spec.min_score is not None:
            ranked = [(i, s) for i, s in ranked if s >= spec.min_score]
        if spec.collapse is None:
            return [collapsing.Group(i, s) for i, s in ranked[:need]], how
        exhausted = len(ranked) < depth or depth >= MAX_CANDIDATES
        groups = collapsing.collapse(collapse_on, ranked, spec.collapse, need)
        if len(groups) >= need or exhausted:
            return groups, how
        depth = min(depth * 4, MAX_CANDIDATES)


def _may_return(searcher: Searcher, allowed: Allowed | None
                ) -> Callable[[np.ndarray], np.ndarray]:
    """ids -> which of them the query may return (held, filter, exclusions)."""
    mask = allowed.mask if allowed is not None else held_mask(searcher)

    def check(ids: np.ndarray) -> np.ndarray:
        inside = ids < len(mask)
        return inside & mask[np.where(inside, ids, 0)]
    return check


def _candidates(searcher: Searcher, q: np.ndarray, params: SearchParams,
                allowed: Allowed | None, depth: int, strategy: FilterStrategy,
                force: str | None) -> tuple[list[tuple[int, float]], str]:
    if allowed is not None:
        return top_among(searcher, q, allowed, depth, params, strategy, force)
    hits = searcher.search_unit(q, replace(params, k=depth))  # in rank order, ties by id
    ids, scores = hits.ids[0], hits.scores[0]
    keep = ids >= 0
    return [(int(i), float(s)) for i, s in zip(ids[keep], scores[keep], strict=True)], "ann"
