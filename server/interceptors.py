"""What every one of our server interceptors needs: wrap a unary handler keeping its
(de)serializers, and the status code a call ended with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

Behaviour = Callable[[Any, grpc.ServicerContext], Any]


def is_unary(handler: grpc.RpcMethodHandler | None) -> bool:
    """Unary-unary calls only: streams (health Watch) last as long as their client."""
    return handler is not None and not handler.request_streaming \
        and not handler.response_streaming


def rewrap(handler: grpc.RpcMethodHandler,
           wrap: Callable[[Behaviour], Behaviour]) -> grpc.RpcMethodHandler:
    """``handler`` with its unary behaviour replaced by ``wrap(behaviour)``."""
    return grpc.unary_unary_rpc_method_handler(
        wrap(handler.unary_unary), request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer)


def final_code(context: grpc.ServicerContext, answered: bool) -> grpc.StatusCode:
    """The code the client sees: the one set on the context, else OK for an answer and
    UNKNOWN for an exception raised without a status (as gRPC reports it)."""
    code = context.code()  # type: ignore[attr-defined]
    return code or (grpc.StatusCode.OK if answered else grpc.StatusCode.UNKNOWN)
