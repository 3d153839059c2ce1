"""The gRPC servicer: protobuf <-> SearchService, and errors -> status codes in one place."""

from __future__ import annotations

import logging
import os

import grpc
import numpy as np
from visearch.v1 import search_pb2, search_pb2_grpc

from common.errors import VisearchError
from common.paths import display_path
from embedder.decode import ImageDecodeError
from index.ann.query import DEFAULT_K, InvalidQueryError, SearchParams
from index.store.contract import NoModelError
from server import rerank_path, write_api
from server.admission import OverloadedError
from server.batcher import BatcherClosedError
from server.config import MAX_BATCH_QUERIES
from server.feedback import api as feedback_api
from server.index_info import defaults_fields
from server.like import UnknownIdError
from server.query import Query
from server.service import (
    CancelledByClientError,
    DeadlineExceededError,
    Result,
    SearchService,
)
from server.thumbs import ThumbnailCache, ThumbnailUnavailableError, thumbnail
from server.writer import InvalidItemError

log = logging.getLogger("visearch.server")

STATUS_BY_ERROR: list[tuple[type[BaseException], grpc.StatusCode]] = [
    (InvalidItemError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidQueryError, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownIdError, grpc.StatusCode.NOT_FOUND),
    (ImageDecodeError, grpc.StatusCode.INVALID_ARGUMENT),
    (NoModelError, grpc.StatusCode.FAILED_PRECONDITION),
    (OverloadedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (CancelledByClientError, grpc.StatusCode.CANCELLED),
    (BatcherClosedError, grpc.StatusCode.UNAVAILABLE),
    (ThumbnailUnavailableError, grpc.StatusCode.FAILED_PRECONDITION),
    (VisearchError, grpc.StatusCode.FAILED_PRECONDITION),
]


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    for kind, code in STATUS_BY_ERROR:
        if isinstance(exc, kind):
            return code, str(exc)
    log.error("internal error", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"


def query_from_proto(request: search_pb2.SearchRequest) -> Query:
    params = SearchParams(
        k=request.k or DEFAULT_K,
        nprobe=request.nprobe if request.HasField("nprobe") else None,
        refine_factor=request.refine_factor if request.HasField("refine_factor") else None,
    )
    crop = None
    if request.HasField("image") and request.image.HasField("crop"):
        box = request.image.crop
        crop = (box.left, box.top, box.right, box.bottom)
    return Query(
        params=params,
        image=request.image.data if request.HasField("image") else None,
        crop=crop,
        text=request.text if request.HasField("text") else None,
        vector=np.asarray(request.embedding.values, dtype=np.float32)
        if request.HasField("embedding") else None,
        like_id=request.like_id if request.HasField("like_id") else None,
        **rerank_path.rerank_from_proto(request),  # type: ignore[arg-type]
    )


def response_to_proto(result: Result) -> search_pb2.SearchResponse:
    t = result.timings
    response = search_pb2.SearchResponse(
        # protobuf strings must be UTF-8: a file name that is not is sent in readable form.
        hits=[search_pb2.Hit(id=i, path=display_path(p), score=s) for i, p, s in result.hits],
        timings=search_pb2.Timings(decode_ms=t.decode_ms, embed_ms=t.embed_ms,
                                   search_ms=t.search_ms, total_ms=t.total_ms),
        index_version=result.index_version,
    )
    rerank_path.decorate(response, result)
    return response


class _CallEnded:
    """Set once the call ended early (client cancelled or went away), so queued work is
    dropped. Read from the call itself, and only while a query waits for the model:
    a threading.Event plus a callback registered under the call's lock cost every call,
    vector queries included, though they never wait."""

    __slots__ = ("_context",)

    def __init__(self, context: grpc.ServicerContext):
        self._context = context

    def is_set(self) -> bool:
        return not self._context.is_active()


def _cancellation(context: grpc.ServicerContext) -> _CallEnded:
    return _CallEnded(context)


class VisualSearchServicer(search_pb2_grpc.VisualSearchServicer):
    """Answers UNAVAILABLE until ``service`` is set, i.e. until model and index are loaded."""

    def __init__(self, device: str = "cpu") -> None:
        self.service: SearchService | None = None
        self.device = device
        self.thumbs = ThumbnailCache(None)  # SearchServer sets the configured cache
        self.feedback: feedback_api.FeedbackRecorder | None = None  # --feedback-log
        self.process = (0, 1)  # (index, count) of `serve --processes N`: shown in Info

    def _service(self, context: grpc.ServicerContext) -> SearchService:
        if self.service is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the index and model are still loading")
        assert self.service is not None
        return self.service

    def Search(self, request: search_pb2.SearchRequest, context: grpc.ServicerContext
               ) -> search_pb2.SearchResponse:
        service = self._service(context)
        try:
            result = service.search(query_from_proto(request), context.time_remaining(),
                                    _cancellation(context))
        except Exception as exc:  # noqa: BLE001 - every error becomes a status code
            context.abort(*status_for(exc))
        return response_to_proto(result)

    def SearchBatch(self, request: search_pb2.SearchBatchRequest,
                    context: grpc.ServicerContext) -> search_pb2.SearchBatchResponse:
        service = self._service(context)
        if len(request.requests) > MAX_BATCH_QUERIES:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"at most {MAX_BATCH_QUERIES} queries per batch")
        queries: list[Query | Exception] = []
        for item in request.requests:
            try:
                queries.append(query_from_proto(item))
            except VisearchError as exc:
                queries.append(exc)
        valid = [q for q in queries if isinstance(q, Query)]
        searcher = service.index.current  # one version answers the whole batch
        answers = iter(service.search_many(valid, context.time_remaining(),
                                           _cancellation(context), searcher))
        response = search_pb2.SearchBatchResponse(index_version=searcher.manifest.version)
        for query in queries:
            outcome = next(answers) if isinstance(query, Query) else query
            if isinstance(outcome, Result):
                response.results.add(response=response_to_proto(outcome))
            else:
                code, message = status_for(outcome)
                response.results.add(error=search_pb2.QueryError(code=code.name,
                                                                 message=message))
        return response

    def Info(self, request: search_pb2.InfoRequest, context: grpc.ServicerContext
             ) -> search_pb2.InfoResponse:
        service = self._service(context)
        searcher = service.index.current
        m = searcher.manifest
        return search_pb2.InfoResponse(
            model=m.model.name, pretrained=m.model.pretrained or "", untrained=m.model.untrained,
            weights_sha256=m.model.weights_sha256, dim=m.dim, vector_count=searcher.ntotal,
            index_spec=m.index.spec, exact=m.index.exact,
            default_nprobe=m.index.default_nprobe or 0, refine_factor=m.index.refine_factor,
            build_time=m.created, format_version=m.format_version, index_version=m.version,
            device=self.device, max_k=service.config.max_k,
            accepts_images_and_text=service.accepts_images_and_text,
            **service.index.info_fields(),  # type: ignore[arg-type]
            **defaults_fields(searcher),  # type: ignore[arg-type]
            pid=os.getpid(), process_index=self.process[0], processes=self.process[1],
        )

    def Thumbnail(self, request: search_pb2.ThumbnailRequest, context: grpc.ServicerContext
                  ) -> search_pb2.ThumbnailResponse:
        service = self._service(context)
        try:
            searcher = service.index.current
            thumb = thumbnail(searcher, request.id, request.size, service.config.limits,
                              self.thumbs, absolute=service.config.absolute_paths)
        except Exception as exc:  # noqa: BLE001 - every error becomes a status code
            context.abort(*status_for(exc))
        return search_pb2.ThumbnailResponse(jpeg=thumb.jpeg, path=thumb.path)

    def Upsert(self, request: search_pb2.UpsertRequest, context: grpc.ServicerContext
               ) -> search_pb2.UpsertResponse:
        service = self._service(context)
        try:
            return write_api.upsert(service, request, context, status_for)
        except Exception as exc:  # noqa: BLE001 - every error becomes a status code
            context.abort(*status_for(exc))

    def Delete(self, request: search_pb2.DeleteRequest, context: grpc.ServicerContext
               ) -> search_pb2.DeleteResponse:
        service = self._service(context)
        try:
            return write_api.delete(service, request)
        except Exception as exc:  # noqa: BLE001
            context.abort(*status_for(exc))

    def Feedback(self, request: search_pb2.FeedbackRequest, context: grpc.ServicerContext
                 ) -> search_pb2.FeedbackResponse:
        try:
            return feedback_api.handle(self.feedback, request)
        except Exception as exc:  # noqa: BLE001
            context.abort(*status_for(exc))
