"""The re-ranking stage over several shards (index.ann.multi.MultiSearcher).

Each shard finds its best allowed candidates with its own filter strategy and the
same parameters; the candidates merge by score (ties by namespaced id); min score,
near-duplicate collapse (over the merged list, so copies in different shards collapse
too) and the page are then taken over the union, exactly as for one index. A shard's
top ``offset + k`` holds every member of the union's top ``offset + k`` from that shard,
so the merged page is the page of one index holding all shards' vectors.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from index.ann.multi import MultiSearcher, global_id, merge_key
from index.ann.query import MAX_CANDIDATES, InvalidQueryError, SearchParams
from index.rerank import stage
from index.rerank.filtered import DEFAULT_STRATEGY, FilterStrategy
from index.rerank.masks import Allowed
from index.rerank.stage import Ranked, RankedHit, Rerank


def shard_spec(multi: MultiSearcher, shard: int, spec: Rerank) -> Rerank:
    """What shard ``shard`` applies itself: the filter, its own excluded ids (local), the
    excluded keys (each shard resolves its own); the rest is applied over the union."""
    local = tuple(local for s, ids in multi.by_shard(spec.exclude_ids).items() if s == shard
                  for local in ids)
    return Rerank(filter=spec.filter, exclude_ids=local, exclude_keys=spec.exclude_keys)


def check(multi: MultiSearcher, spec: Rerank, params: SearchParams) -> None:
    if spec.offset + params.k > MAX_CANDIDATES:
        raise InvalidQueryError(f"offset + k = {spec.offset + params.k:,} is over the limit "
                                f"of {MAX_CANDIDATES:,} ranked results")
    for i, shard in enumerate(multi.shards):
        stage.check(shard, replace(spec, exclude_ids=shard_spec(multi, i, spec).exclude_ids,
                                   offset=0), multi._shard_params(shard, params))


def rank(multi: MultiSearcher, q: np.ndarray, params: SearchParams, spec: Rerank,
         strategy: FilterStrategy = DEFAULT_STRATEGY) -> Ranked:
    """The page [offset, offset + k) of the re-ranked union for the (1, dim) unit query."""
    allowed = [stage.allowed_for(shard, shard_spec(multi, i, spec))
               for i, shard in enumerate(multi.shards)]
    counted = [a.count for a in allowed if a is not None]
    matched = sum(counted) if counted else -1
    need = spec.offset + params.k
    groups, how = stage.widened(lambda depth: _merged(multi, q, params, allowed, depth,
                                                      strategy), multi, spec, need)
    hits = [RankedHit(g.id, g.score, g.members) for g in groups[spec.offset:need]]
    if spec.fields:
        for shard, local in multi.by_shard(h.id for h in hits).items():
            rows = stage.provider(multi.shards[shard]).get(local, spec.fields)
            by_id = {global_id(shard, i): row for i, row in zip(local, rows, strict=True)}
            for hit in hits:
                hit.fields = by_id.get(hit.id, hit.fields)
    return Ranked(hits, how, matched, more=len(groups) >= need)


def _merged(multi: MultiSearcher, q: np.ndarray, params: SearchParams,
            allowed: list[Allowed | None], depth: int, strategy: FilterStrategy
            ) -> tuple[list[tuple[int, float]], str]:
    """Every shard's best ``depth`` allowed candidates, merged; the strategies used."""
    def one(i: int) -> tuple[list[tuple[int, float]], str]:
        shard = multi.shards[i]
        found, how = stage._candidates(shard, q, multi._shard_params(shard, params),
                                       allowed[i], depth, strategy, None)
        return [(global_id(i, j), s) for j, s in found], how

    parts = multi.map(one, range(len(multi.shards)))
    # By each shard's running lowest score, then shard and position: prefix-stable pages.
    keyed = [(-key, shard, position, hit) for shard, (found, _) in enumerate(parts)
             for position, (key, hit) in enumerate(zip(merge_key([s for _, s in found]),
                                                       found, strict=True))]
    merged = [hit for *_, hit in sorted(keyed)]
    how = ",".join(dict.fromkeys(how for _, how in parts))
    return merged[:depth], how
