"""The service's path for queries with re-ranking options (filter, exclusions, min score,
collapse, pages, fields, like_key / include_self), one query at a time, and their
protobuf fields. Plain queries keep the batched path in service.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
from visearch.v1 import search_pb2

from index.ann.query import InvalidQueryError
from index.rerank import collapse, pages
from index.rerank import stage as rerank
from index.rerank.stage import Rerank

if TYPE_CHECKING:
    from index.ann.search import Searcher
    from server.query import Query
    from server.service import Result


@dataclass
class HitExtra:
    collapsed_ids: list[int] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


@dataclass
class PageInfo:
    next_page_token: str = ""
    version_changed: bool = False
    strategy: str = "ann"
    matched: int = -1
    reranked: bool = False  # made by search_one (a last page has no token)


def needs_rerank(query: Query) -> bool:
    return query.rerank.active or bool(query.page_token) or query.include_self or \
        query.like_key is not None


def spec_for(searcher: Searcher, query: Query, liked: int | None) -> tuple[Rerank, bool]:
    """The query's options against this version: the page token's offset, the liked item
    excluded unless include_self. Returns (options, whether the token is of another
    version)."""
    spec, changed = query.rerank, False
    if query.page_token:
        if spec.offset:
            raise InvalidQueryError("give offset or page_token, not both")
        version, offset = pages.read_token(query.page_token)
        spec = replace(spec, offset=offset)
        changed = version != searcher.manifest.version
    if liked is not None and not query.include_self:
        spec = replace(spec, exclude_ids=(*spec.exclude_ids, liked))
    return spec, changed


def check(searcher: Searcher, query: Query) -> None:
    """The options' own errors (a filter's position, unknown fields), before any search."""
    spec, _ = spec_for(searcher, query, None)
    _stage(searcher).check(searcher, spec, query.params)


def search_one(searcher: Searcher, query: Query, vector: np.ndarray, liked: int | None,
               absolute_paths: bool) -> Result:
    from server.service import Result, Timings

    start = time.perf_counter()
    spec, changed = spec_for(searcher, query, liked)
    ranked = _stage(searcher).rank(searcher, vector, query.params, spec)
    ids = [h.id for h in ranked.hits]
    looked_up = time.perf_counter()
    paths = searcher.shown_paths(ids, absolute_paths)
    version = searcher.manifest.version
    end = time.perf_counter()
    result = Result([(h.id, paths.get(h.id, ""), h.score) for h in ranked.hits], version,
                    Timings(search_ms=(end - start) * 1000, rerank_ms=(looked_up - start) * 1000,
                            lookup_ms=(end - looked_up) * 1000))
    result.extras = [HitExtra(h.collapsed_ids, h.fields) for h in ranked.hits]
    result.page = PageInfo(
        pages.make_token(version, spec.offset + query.params.k) if ranked.more else "",
        changed, ranked.strategy, ranked.matched, reranked=True)
    return result


def _stage(searcher: Searcher):  # type: ignore[no-untyped-def]
    """The re-ranking stage for one index, or over the shards of a multi-index server."""
    if hasattr(searcher, "shards"):
        from index.rerank import multi

        return multi
    return rerank


def rerank_from_proto(request: search_pb2.SearchRequest) -> dict[str, object]:
    """The Query fields of the re-ranking options in ``request``."""
    threshold = None
    if request.collapse or request.HasField("collapse_threshold"):
        threshold = request.collapse_threshold if request.HasField("collapse_threshold") \
            else collapse.DEFAULT_THRESHOLD
    return {
        "like_key": request.like_key if request.HasField("like_key") else None,
        "include_self": request.include_self,
        "page_token": request.page_token,
        "rerank": Rerank(
            filter=request.filter or None,
            exclude_ids=tuple(request.exclude_ids),
            exclude_keys=tuple(request.exclude_keys),
            min_score=request.min_score if request.HasField("min_score") else None,
            collapse=threshold,
            offset=request.offset,
            fields=tuple(request.fields)),
    }


def decorate(response: search_pb2.SearchResponse, result: Result) -> None:
    """Add the re-ranking parts of ``result`` to its protobuf response."""
    for hit, extra in zip(response.hits, result.extras, strict=False):
        hit.collapsed = len(extra.collapsed_ids)
        hit.collapsed_ids.extend(extra.collapsed_ids)
        hit.fields.update(extra.fields)
    page = result.page
    response.next_page_token = page.next_page_token
    if not page.reranked and result.hits:  # a plain query is page one
        response.next_page_token = pages.make_token(result.index_version, len(result.hits))
    response.version_changed = page.version_changed
    response.strategy = page.strategy
    response.matched = page.matched
