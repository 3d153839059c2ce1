"""The gRPC server as a search backend, so `visearch eval --server` measures end to end.

It imports only the client and plain data: no torch, open_clip or faiss."""

from __future__ import annotations

import numpy as np

from index.ann.query import Hits, SearchParams
from server.client import QueryFailed, SearchClient, SearchResult, vector_request
from server.config import MAX_BATCH_QUERIES


class RemoteSearchError(RuntimeError):
    """A query of an evaluation failed on the server."""


class RemoteBackend:
    """Embedding queries through SearchBatch (batched) and Search (single)."""

    def __init__(self, client: SearchClient, filter: str | None = None):
        self.client = client
        self.filter = filter  # every query carries it (filtered recall)

    def search(self, queries: np.ndarray, params: SearchParams) -> Hits:
        results: list[SearchResult] = []
        for start in range(0, len(queries), MAX_BATCH_QUERIES):
            chunk = queries[start:start + MAX_BATCH_QUERIES]
            for answer in self.client.search_batch([self._request(q, params) for q in chunk]):
                if isinstance(answer, QueryFailed):
                    raise RemoteSearchError(f"{answer.code}: {answer.message}")
                results.append(answer)
        return _hits(results, params.k)

    def search_one(self, query: np.ndarray, params: SearchParams) -> Hits:
        return _hits([self.client.search(self._request(query, params))], params.k)

    def _request(self, query: np.ndarray, params: SearchParams):  # type: ignore[no-untyped-def]
        return vector_request(query, k=params.k, nprobe=params.nprobe,
                              refine_factor=params.refine_factor, filter=self.filter)


def _hits(results: list[SearchResult], k: int) -> Hits:
    ids = np.full((len(results), k), -1, dtype=np.int64)
    scores = np.full((len(results), k), -np.inf, dtype=np.float32)
    for row, result in enumerate(results):
        for col, hit in enumerate(result.hits[:k]):
            ids[row, col], scores[row, col] = hit.id, hit.score
    return Hits(ids, scores)
