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


class LocalBackend:
    """The index searched in this process."""

    def __init__(self, searcher: Searcher):
        self.searcher = searcher

    def search(self, queries: np.ndarray, params: SearchParams) -> Hits:
        return self.searcher.search(queries, params)

    def search_one(self, query: np.ndarray, params: SearchParams) -> Hits:
        return self.searcher.search(query[None], params)
