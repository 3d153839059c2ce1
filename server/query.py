"""A search request as the service sees it, and the one place a request is validated:
before any decoding, embedding or searching, against the index version that answers it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from index.ann.query import InvalidQueryError, SearchParams
from index.ann.search import Searcher
from index.rerank.stage import Rerank
from index.store.contract import require_model, require_text
from server.config import ServiceConfig


@dataclass(frozen=True)
class Query:
    """Exactly one of image, text, vector or like_id, plus per-call search parameters."""

    params: SearchParams
    image: bytes | None = None
    crop: tuple[int, int, int, int] | None = None
    text: str | None = None
    vector: np.ndarray | None = None
    like_id: int | None = None  # "more like this": see server/like.py
    like_key: str | None = None  # like_id by key or shown path
    include_self: bool = False  # keep the liked item among the hits
    page_token: str = ""
    rerank: Rerank = Rerank()  # filter, exclusions, min score, collapse, offset, fields


def validate(query: Query, searcher: Searcher, config: ServiceConfig) -> None:
    """Raise InvalidQueryError (or NoModelError) with the reason; decoding errors and a crop
    box outside the image are found when the image is decoded."""
    given = sum(x is not None for x in (query.image, query.text, query.vector, query.like_id,
                                        query.like_key))
    if given != 1:
        raise InvalidQueryError(f"a query needs exactly one of image, text, embedding, "
                                f"like_id or like_key; got {given}")
    if query.crop is not None and query.image is None:
        raise InvalidQueryError("a crop box applies to image queries only")
    if query.vector is None and query.like_id is None and query.like_key is None:
        require_model(searcher.manifest.model, "an image or text query (send an embedding)")
    if query.text is not None:
        if not query.text.strip():
            raise InvalidQueryError("text query is empty")
        require_text(searcher.manifest.model)
        size = len(query.text.encode("utf-8", "surrogatepass"))
        if size > config.max_text_bytes:
            # The tokenizer keeps 77 tokens; a longer text only costs the model time.
            raise InvalidQueryError(f"text query is {size:,} bytes, over the limit of "
                                    f"{config.max_text_bytes:,} (--max-text-bytes)")
    searcher.check_params(query.params, config.max_k, config.max_candidates,
                          offset=_page_offset(query))
    if query.include_self and query.like_id is None and query.like_key is None:
        raise InvalidQueryError("include_self applies to like_id and like_key queries")
    from server import rerank_path

    if rerank_path.needs_rerank(query):
        rerank_path.check(searcher, query)


def _page_offset(query: Query) -> int:
    """Where the asked page starts (offset, or the page token's), so the candidate limit
    counts the depth the page really searches; a bad token is refused here."""
    if query.page_token:
        from index.rerank.pages import read_token

        return read_token(query.page_token)[1]
    return query.rerank.offset
