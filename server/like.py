""""More like this": a query that is the stored vector of an indexed id.

Kept apart from the rest of the service so the re-ranking work can generalise it
(several ids, negative examples, collapse) without touching the search path: the
service asks this module for the query vector, for the search depth and for the
hits to keep.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from common.errors import VisearchError
from index.ann.query import SearchParams

if TYPE_CHECKING:
    from index.ann.search import Searcher
    from server.query import Query
    from server.service import Result


class UnknownIdError(VisearchError, LookupError):
    """The id is not a live image of the served index version (NOT_FOUND)."""


def stored_vector(searcher: Searcher, like_id: int) -> np.ndarray:
    """The raw stored vector of ``like_id`` as a (1, dim) query at unit length."""
    if like_id < 0 or like_id >= searcher.store.count or \
            searcher.catalog.live_record(like_id) is None:
        raise UnknownIdError(f"id {like_id} is not in the index")
    return searcher.prepare(searcher.store.get(np.array([like_id])))


def liked_id(searcher: Searcher, query: Query) -> int | None:
    """The id a like_id or like_key query names (UnknownIdError when none is live)."""
    if query.like_key is None:
        return query.like_id
    from index.rerank.stage import resolve_keys

    found = resolve_keys(searcher, (query.like_key,)).get(query.like_key)
    if found is None:
        raise UnknownIdError(f"key {query.like_key!r} is not in the index")
    return found


def search_params(query: Query) -> SearchParams:
    """One more hit than asked for, so the queried image itself can be dropped."""
    if query.like_id is None:
        return query.params
    return replace(query.params, k=query.params.k + 1)


def drop_self(outcome: Result | Exception, query: Query) -> Result | Exception:
    """The hits without the queried id, at most k of them."""
    if query.like_id is None or isinstance(outcome, Exception):
        return outcome
    outcome.hits = [h for h in outcome.hits if h[0] != query.like_id][:query.params.k]
    return outcome
