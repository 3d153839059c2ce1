"""Where an evaluation sends its queries: this process, or a server (see evaluation.remote)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from index.ann.search import Hits, Searcher, SearchParams


class SearchBackend(Protocol):
    def search(self, queries: np.ndarray, params: SearchParams) -> Hits:
        """Many queries in one call (batched)."""

    def search_one(self, query: np.ndarray, params: SearchParams) -> Hits:
        """One query per call, as an interactive client sends them."""


class FilteredLocalBackend:
    """The index searched in this process through the re-ranking stage with a filter, one
    query at a time as the server does."""

    def __init__(self, searcher: Searcher, filter_text: str):
        from index.rerank.stage import Rerank

        self.searcher = searcher
        self.spec = Rerank(filter=filter_text)

    def search(self, queries: np.ndarray, params: SearchParams) -> Hits:
        from index.rerank.stage import rank

        self.searcher.check_params(params)
        q = self.searcher.prepare(queries)
        ids = np.full((len(q), params.k), -1, dtype=np.int64)
        scores = np.full((len(q), params.k), -np.inf, dtype=np.float32)
        for row in range(len(q)):
            for col, hit in enumerate(rank(self.searcher, q[row:row + 1], params,
                                           self.spec).hits):
                ids[row, col], scores[row, col] = hit.id, hit.score
        return Hits(ids, scores)

    def search_one(self, query: np.ndarray, params: SearchParams) -> Hits:
        return self.search(query[None], params)


class LocalBackend:
    """The index searched in this process."""

    def __init__(self, searcher: Searcher):
        self.searcher = searcher

    def search(self, queries: np.ndarray, params: SearchParams) -> Hits:
        return self.searcher.search(queries, params)

    def search_one(self, query: np.ndarray, params: SearchParams) -> Hits:
        return self.searcher.search(query[None], params)
