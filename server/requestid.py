"""Request ids: one per call, from the client's ``x-request-id`` metadata or made here.

The id goes back in trailing metadata (so a client can quote it in a bug report),
is set in a context variable while the handler runs (so every log record the
call writes carries it, see common.logfmt), and a call that ends with an error
is logged once with its id, method, code and duration.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc

from common.logfmt import current_request
from server.interceptors import Behaviour, final_code, is_unary, rewrap

log = logging.getLogger("visearch.server.requests")

HEADER = "x-request-id"
MAX_ID_CHARS = 128  # a longer client id is cut: it ends up in logs


def request_id(metadata: Any) -> str:
    """The client's id when it sent a printable one, else a new random one."""
    for key, value in metadata or ():
        if key == HEADER:
            text = str(value).strip()[:MAX_ID_CHARS]
            if text and text.isprintable():
                return text
    return uuid.uuid4().hex


class RequestIdInterceptor(grpc.ServerInterceptor):
    """Gives every unary call an id; streaming calls (health Watch) pass through."""

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if not is_unary(handler):
            return handler
        rid = request_id(handler_call_details.invocation_metadata)
        method = handler_call_details.method

        def wrap(inner: Behaviour) -> Behaviour:
            def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
                start = time.perf_counter()
                token = current_request.set({"request_id": rid, "method": method})
                context.set_trailing_metadata(((HEADER, rid),))
                ok = False
                try:
                    response = inner(request, context)
                    ok = True
                    return response
                finally:
                    code = final_code(context, ok)
                    if code != grpc.StatusCode.OK:
                        details = context.details() or b""  # type: ignore[attr-defined]
                        if isinstance(details, bytes):
                            details = details.decode("utf-8", "replace")
                        log.warning("%s failed: %s: %s", method, code.name, details, extra={
                            "request_id": rid, "method": method, "code": code.name,
                            "duration_ms": round((time.perf_counter() - start) * 1000, 3)})
                    current_request.reset(token)

            return behaviour

        return rewrap(handler, wrap)
