"""Upsert and Delete over gRPC: protobuf <-> server.writer, kept apart from the search
servicer. A server without --writable answers FAILED_PRECONDITION."""

from __future__ import annotations

import grpc
import numpy as np
from visearch.v1 import search_pb2

from server.service import SearchService
from server.writer import OnlineWriter, ReadOnlyServerError, WriteItem

MAX_WRITE_ITEMS = 4096


def _writer(service: SearchService) -> OnlineWriter:
    if service.writer is None:
        raise ReadOnlyServerError("this server is read-only: start it with `visearch serve "
                                  "--writable` to accept Upsert and Delete")
    writer: OnlineWriter = service.writer
    return writer


def item_from_proto(item: search_pb2.UpsertItem) -> WriteItem:
    return WriteItem(
        key=item.key,
        image=item.image if item.HasField("image") else None,
        vector=np.asarray(item.embedding.values, dtype=np.float32)
        if item.HasField("embedding") else None,
        metadata=dict(item.metadata),
    )


def upsert(service: SearchService, request: search_pb2.UpsertRequest,
           context: grpc.ServicerContext, status_for: object) -> search_pb2.UpsertResponse:
    writer = _writer(service)
    if len(request.items) > MAX_WRITE_ITEMS:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      f"at most {MAX_WRITE_ITEMS} items per Upsert")
    items = [item_from_proto(item) for item in request.items]
    outcome = writer.upsert(items, allow_partial=request.allow_partial)
    response = search_pb2.UpsertResponse(index_version=writer.searcher.manifest.version)
    for item, result in zip(items, outcome, strict=True):
        if isinstance(result, Exception):
            code, message = status_for(result)  # type: ignore[operator]
            response.results.add(key=item.key, id=-1, error=search_pb2.QueryError(
                code=code.name, message=message))
        else:
            response.results.add(key=item.key, id=result)
    return response


def delete(service: SearchService, request: search_pb2.DeleteRequest
           ) -> search_pb2.DeleteResponse:
    outcome = _writer(service).delete(list(request.keys), [int(i) for i in request.ids])
    return search_pb2.DeleteResponse(removed=outcome.removed, unknown_keys=outcome.unknown_keys,
                                     unknown_ids=outcome.unknown_ids)
