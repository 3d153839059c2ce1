"""The JSON shapes of the API, as pydantic models: they validate requests and make the
OpenAPI document (GET /v1/openapi.json)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SearchParamsBody(BaseModel):
    """Search parameters shared by every kind of query."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(10, ge=1, description="number of results")
    nprobe: int | None = Field(None, ge=1, description="IVF lists to visit; default: the index's")
    refine_factor: int | None = Field(None, ge=1,
                                      description="re-rank k*factor PQ candidates; 1: off")
    # The re-ranking stage (README "Filters and re-ranking"); unset changes nothing.
    filter: str | None = Field(None, description='e.g. folder = "shoes" and width > 800')
    exclude_ids: list[int] = Field(default_factory=list, description="ids never to return")
    exclude_keys: list[str] = Field(default_factory=list, description="keys never to return")
    min_score: float | None = Field(None, description="drop hits below this cosine")
    collapse: bool | float = Field(False, description="collapse near-duplicates: true for "
                                   "the default threshold (0.97), or a cosine threshold")
    offset: int = Field(0, ge=0, description="skip this many results (pages)")
    page_token: str = Field("", description="next_page_token of the previous page")
    fields: list[str] = Field(default_factory=list, description="metadata fields per hit")

    def options(self) -> dict[str, Any]:
        """The re-ranking options as the client's request builders take them."""
        return {"filter": self.filter, "exclude_ids": self.exclude_ids,
                "exclude_keys": self.exclude_keys, "min_score": self.min_score,
                "collapse": self.collapse, "offset": self.offset,
                "page_token": self.page_token, "fields": self.fields}


class SearchBody(SearchParamsBody):
    """A JSON query: exactly one of text, embedding or like_id (images go as multipart)."""

    text: str | None = Field(None, description="text query (CLIP text encoder)")
    embedding: list[float] | None = Field(None, description="query vector; normalised by "
                                          "the server")
    like_id: int | None = Field(None, description="'more like this': the id of an indexed "
                                "image; that image itself is left out")


class ImageForm(SearchParamsBody):
    """The non-file fields of a multipart image query."""

    crop: list[int] | None = Field(None, min_length=4, max_length=4,
                                   description="left, top, right, bottom in pixels")


class HitOut(BaseModel):
    id: int
    path: str
    score: float
    thumb: str = Field(description="URL of the hit's thumbnail")
    collapsed_ids: list[int] = Field(default_factory=list,
                                     description="near-duplicates this hit stands for")
    fields: dict[str, str] = Field(default_factory=dict, description="requested metadata")


class QueryEcho(BaseModel):
    """The query as the server understood it (what the page shows back)."""

    kind: str = Field(description="image, text, embedding or like")
    k: int
    nprobe: int | None = None
    refine_factor: int | None = None
    crop: list[int] | None = None
    text: str | None = None
    like_id: int | None = None


class SearchOut(BaseModel):
    hits: list[HitOut]
    timings: dict[str, float]
    index_version: int
    next_page_token: str = ""
    query_id: str = Field("", description="names this answer in Feedback calls (gRPC)")
    query: QueryEcho


class ErrorDetail(BaseModel):
    code: str = Field(description="gRPC status code name, e.g. INVALID_ARGUMENT")
    message: str


class ErrorOut(BaseModel):
    error: ErrorDetail


class HealthOut(BaseModel):
    status: str = Field(description="gRPC health of the search server: SERVING, "
                        "NOT_SERVING, or UNREACHABLE")
