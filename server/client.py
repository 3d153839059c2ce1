"""Python client for the visearch gRPC service.

    with SearchClient("localhost:50051") as client:
        for hit in client.search_image("cat.jpg", k=5).hits:
            print(hit.score, hit.path)

    # TLS with a private CA, a client certificate (mutual TLS) and a bearer token:
    SearchClient("search.internal:50051", tls_ca="ca.pem", tls_cert="me.pem",
                 tls_key="me.key", token="...")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from visearch.v1 import search_pb2, search_pb2_grpc

from index.store.upsert_fields import wire_fields
from server.config import DEFAULT_MAX_MESSAGE_BYTES, message_options
from server.security import ChannelSecurity


@dataclass(frozen=True)
class Hit:
    id: int
    path: str
    score: float
    collapsed_ids: list[int] = field(default_factory=list)  # near-duplicates it stands for
    fields: dict[str, str] = field(default_factory=dict)  # requested metadata fields


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    timings: dict[str, float]
    index_version: int
    next_page_token: str = ""
    version_changed: bool = False
    strategy: str = "ann"
    matched: int = -1
    query_id: str = ""  # for feedback(): names this answer

    def to_json(self) -> dict[str, Any]:
        # collapsed_ids and fields only where set: plain hits stay {id, path, score}.
        hits = [{k: v for k, v in asdict(h).items() if v or k in ("id", "path", "score")}
                for h in self.hits]
        return {"hits": hits, "timings": self.timings,
                "index_version": self.index_version, "next_page_token": self.next_page_token,
                "version_changed": self.version_changed, "strategy": self.strategy,
                "matched": self.matched, "query_id": self.query_id}


@dataclass(frozen=True)
class QueryFailed:
    """One query of a batch that failed; the others still have results."""

    code: str
    message: str


@dataclass(frozen=True)
class Upserted:
    """One upserted item: its new id, or (id -1) the code and message of its error."""

    key: str
    id: int
    error: QueryFailed | None = None


@dataclass(frozen=True)
class Deleted:
    removed: int
    unknown_keys: list[str]
    unknown_ids: list[int]


def image_request(image: bytes | str | Path, *, k: int = 10,
                  crop: Sequence[int] | None = None, nprobe: int | None = None,
                  refine_factor: int | None = None, **options: Any) -> search_pb2.SearchRequest:
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    query = search_pb2.ImageQuery(data=data)
    if crop is not None:
        left, top, right, bottom = (int(v) for v in crop)
        query.crop.CopyFrom(search_pb2.CropBox(left=left, top=top, right=right, bottom=bottom))
    return with_options(_with_params(search_pb2.SearchRequest(image=query), k, nprobe,
                                     refine_factor), **options)


def text_request(text: str, *, k: int = 10, nprobe: int | None = None,
                 refine_factor: int | None = None, **options: Any) -> search_pb2.SearchRequest:
    return with_options(_with_params(search_pb2.SearchRequest(text=text), k, nprobe,
                                     refine_factor), **options)


def vector_request(vector: Sequence[float] | np.ndarray, *, k: int = 10,
                   nprobe: int | None = None,
                   refine_factor: int | None = None, **options: Any) -> search_pb2.SearchRequest:
    values = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
    request = search_pb2.SearchRequest(embedding=search_pb2.Embedding(values=values))
    return with_options(_with_params(request, k, nprobe, refine_factor), **options)


def like_request(like: int | str, *, k: int = 10, nprobe: int | None = None,
                 refine_factor: int | None = None, **options: Any) -> search_pb2.SearchRequest:
    """"More like this" indexed image, by id or by key: its stored vector is the query,
    itself left out unless ``include_self=True``."""
    request = search_pb2.SearchRequest(like_key=like) if isinstance(like, str) else \
        search_pb2.SearchRequest(like_id=like)
    return with_options(_with_params(request, k, nprobe, refine_factor), **options)


def with_options(request: search_pb2.SearchRequest, *, filter: str | None = None,
                 exclude_ids: Sequence[int] = (), exclude_keys: Sequence[str] = (),
                 min_score: float | None = None, collapse: bool | float = False,
                 offset: int = 0, page_token: str = "", fields: Sequence[str] = (),
                 include_self: bool = False) -> search_pb2.SearchRequest:
    """The re-ranking options (README "Filters and re-ranking"); ``collapse`` is True for
    the default threshold or a cosine threshold."""
    if filter:
        request.filter = filter
    request.exclude_ids.extend(int(i) for i in exclude_ids)
    request.exclude_keys.extend(exclude_keys)
    if min_score is not None:
        request.min_score = min_score
    if collapse is not False:
        request.collapse = True
        if not isinstance(collapse, bool):
            request.collapse_threshold = float(collapse)
    request.offset = offset
    request.page_token = page_token
    request.fields.extend(fields)
    request.include_self = include_self
    return request


def _with_params(request: search_pb2.SearchRequest, k: int, nprobe: int | None,
                 refine_factor: int | None) -> search_pb2.SearchRequest:
    request.k = k
    if nprobe is not None:
        request.nprobe = nprobe
    if refine_factor is not None:
        request.refine_factor = refine_factor
    return request


def result_from_proto(response: search_pb2.SearchResponse) -> SearchResult:
    t = response.timings
    return SearchResult(
        hits=[Hit(h.id, h.path, h.score, list(h.collapsed_ids), dict(h.fields))
              for h in response.hits],
        timings={"decode_ms": t.decode_ms, "embed_ms": t.embed_ms, "search_ms": t.search_ms,
                 "total_ms": t.total_ms},
        index_version=response.index_version,
        next_page_token=response.next_page_token,
        version_changed=response.version_changed,
        strategy=response.strategy or "ann",
        matched=response.matched,
        query_id=response.query_id,
    )


class SearchClient:
    """A channel to one server; thread-safe. Errors are ``grpc.RpcError`` with a status code.

    TLS turns on with ``tls_ca`` (the CA that signed the server's certificate) or a
    client certificate; ``token`` goes on every call as a bearer token. Or pass every
    setting at once as ``security`` (what the command line builds).
    """

    def __init__(self, target: str, *, timeout: float | None = 30.0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 token: str | None = None, tls_ca: str | Path | None = None,
                 tls_cert: str | Path | None = None, tls_key: str | Path | None = None,
                 security: ChannelSecurity | None = None):
        separate = (token, tls_ca, tls_cert, tls_key)
        if security is not None and any(v is not None for v in separate):
            raise TypeError("give security= or token/tls_* arguments, not both")
        if security is None:
            security = ChannelSecurity(tls_ca=_path(tls_ca), tls_cert=_path(tls_cert),
                                       tls_key=_path(tls_key), token=token)
        self.timeout = timeout
        self.channel = security.open_channel(target, message_options(max_message_bytes))
        self.stub = search_pb2_grpc.VisualSearchStub(self.channel)
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)

    def search(self, request: search_pb2.SearchRequest, timeout: float | None = None
               ) -> SearchResult:
        return result_from_proto(self.stub.Search(request, timeout=timeout or self.timeout))

    def search_image(self, image: bytes | str | Path, **kwargs: Any) -> SearchResult:
        return self.search(image_request(image, **kwargs))

    def search_text(self, text: str, **kwargs: Any) -> SearchResult:
        return self.search(text_request(text, **kwargs))

    def search_vector(self, vector: Sequence[float] | np.ndarray, **kwargs: Any) -> SearchResult:
        return self.search(vector_request(vector, **kwargs))

    def search_like(self, like: int | str, **kwargs: Any) -> SearchResult:
        return self.search(like_request(like, **kwargs))

    def thumbnail(self, image_id: int, size: int = 0) -> tuple[bytes, str]:
        """(JPEG bytes, readable path) of an indexed image; NOT_FOUND for an unknown id,
        FAILED_PRECONDITION when the file can no longer be read or decoded."""
        response = self.stub.Thumbnail(search_pb2.ThumbnailRequest(id=image_id, size=size),
                                       timeout=self.timeout)
        return response.jpeg, response.path

    def search_batch(self, requests: Sequence[search_pb2.SearchRequest],
                     timeout: float | None = None) -> list[SearchResult | QueryFailed]:
        response = self.stub.SearchBatch(search_pb2.SearchBatchRequest(requests=requests),
                                         timeout=timeout or self.timeout)
        return [result_from_proto(r.response) if r.HasField("response")
                else QueryFailed(r.error.code, r.error.message) for r in response.results]

    def upsert(self, items: Sequence[search_pb2.UpsertItem], *, allow_partial: bool = False,
               timeout: float | None = None) -> list[Upserted]:
        """Add or replace items on a ``--writable`` server; durable and searchable on return."""
        response = self.stub.Upsert(
            search_pb2.UpsertRequest(items=items, allow_partial=allow_partial),
            timeout=timeout or self.timeout)
        return [Upserted(r.key, r.id, QueryFailed(r.error.code, r.error.message)
                         if r.HasField("error") else None) for r in response.results]

    def upsert_images(self, images: Sequence[str | Path] | dict[str, bytes], *,
                      metadata: dict[str, dict[str, Any]] | None = None,
                      **kwargs: Any) -> list[Upserted]:
        """Image files (the key is the absolute path) or ``{key: image bytes}``; metadata
        by key, typed Python values (int, float, bool, datetime, list) kept as such."""
        pairs = images.items() if isinstance(images, dict) else \
            [(str(Path(p).resolve()), Path(p).read_bytes()) for p in images]
        return self.upsert([search_pb2.UpsertItem(
            key=key, image=data, metadata=wire_fields((metadata or {}).get(key, {})))
            for key, data in pairs], **kwargs)

    def upsert_vectors(self, keys: Sequence[str], vectors: np.ndarray, *,
                       metadata: Sequence[dict[str, Any]] | None = None,
                       **kwargs: Any) -> list[Upserted]:
        rows = np.asarray(vectors, dtype=np.float32).reshape(len(keys), -1)
        return self.upsert([search_pb2.UpsertItem(
            key=key, embedding=search_pb2.Embedding(values=row.tolist()),
            metadata=wire_fields(metadata[i]) if metadata else {}) for i, (key, row) in
            enumerate(zip(keys, rows, strict=True))], **kwargs)

    def delete(self, keys: Sequence[str] = (), ids: Sequence[int] = (),
               timeout: float | None = None) -> Deleted:
        """Retire items by key or id on a ``--writable`` server; gone from search on return."""
        response = self.stub.Delete(search_pb2.DeleteRequest(keys=keys, ids=ids),
                                    timeout=timeout or self.timeout)
        return Deleted(response.removed, list(response.unknown_keys),
                       list(response.unknown_ids))

    def feedback(self, query_id: str, *, impression: bool = False,
                 click: tuple[int, int] | None = None, dwell_ms: int | None = None) -> int:
        """Tell the server what a person did with an answer (``SearchResult.query_id``):
        ``impression`` its hits were shown; ``click`` (hit id, 1-based rank) one was
        opened; ``dwell_ms`` how long they stayed on it (needs ``click``). Returns the
        number of events recorded; FAILED_PRECONDITION when the server keeps no log."""
        events = []
        if impression:
            events.append(search_pb2.FeedbackEvent(kind="impression"))
        if click is not None:
            events.append(search_pb2.FeedbackEvent(kind="click", hit_id=click[0],
                                                   rank=click[1]))
            if dwell_ms is not None:
                events.append(search_pb2.FeedbackEvent(kind="dwell", hit_id=click[0],
                                                       rank=click[1], dwell_ms=dwell_ms))
        elif dwell_ms is not None:
            raise ValueError("dwell_ms needs the click it belongs to")
        response = self.stub.Feedback(
            search_pb2.FeedbackRequest(query_id=query_id, events=events), timeout=self.timeout)
        return int(response.recorded)

    def info(self) -> dict[str, Any]:
        from google.protobuf.json_format import MessageToDict

        response = self.stub.Info(search_pb2.InfoRequest(), timeout=self.timeout)
        return MessageToDict(response, preserving_proto_field_name=True,
                             always_print_fields_with_no_presence=True)

    def health(self, service: str = "") -> str:
        response = self.health_stub.Check(health_pb2.HealthCheckRequest(service=service),
                                          timeout=self.timeout)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> SearchClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)
