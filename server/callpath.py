"""Everything a call passes through before the servicer, as ONE interceptor.

Request ids, metrics, query ids and bearer-token checks used to be four interceptors,
each making a closure and a new method handler per call on gRPC's polling thread and
adding a Python frame per call on the worker. The server is bound by hand-offs of the
GIL between those threads (docs/measurements.md), so the polling thread now does only
what must happen before the handler is chosen (the token check, the admission probe)
and reuses one wrapped handler per method; the per-call work runs on the worker, in
this order, which is the order the four layers had:

1. a request id from ``x-request-id`` (or a new one), echoed in trailing metadata and
   set in ``current_request`` for log records (server.requestid);
2. metrics: in-flight gauge, count and latency by method and code, stage timings;
3. a ``query_id`` on every search answer, logged by the feedback recorder;
4. a call the token policy refuses is aborted before its request is parsed: it still
   gets a request id and is counted, like any call that fails.

Streaming calls (health Watch) pass through with only the token check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from common.logfmt import current_request
from server.auth import AuthPolicy, refusing_handler
from server.feedback.api import SEARCH_METHODS, stamp_query_ids
from server.interceptors import Behaviour, final_code, is_unary, rewrap
from server.metrics import OverloadProbe, ServerMetrics, short_method
from server.requestid import HEADER, request_id

if TYPE_CHECKING:
    from server.feedback.api import FeedbackRecorder

log = logging.getLogger("visearch.server.requests")


class CallInterceptor(grpc.ServerInterceptor):
    """The one interceptor of ``visearch serve``; each part is optional."""

    def __init__(self, *, metrics: ServerMetrics | None = None,
                 overload: OverloadProbe | None = None,
                 auth: AuthPolicy | None = None,
                 feedback: FeedbackRecorder | None = None):
        self.metrics = metrics
        self.overload = overload
        self.auth = auth
        self.feedback = feedback
        # method -> (handler gRPC gave, our wrapped one): the generic handler hands back
        # the same object per method, so the wrapping is done once, not once per call.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:  # unknown methods stay UNIMPLEMENTED
            return None
        method = handler_call_details.method
        if self.auth is not None:
            refusal = self.auth.check(method, handler_call_details.invocation_metadata or ())
            if refusal is not None:
                log.debug("refused %s: %s", method, refusal[1])
                refused = refusing_handler(handler, *refusal)
                return self._wrap(refused, method) if is_unary(refused) else refused
        if not is_unary(handler):
            return handler
        if self.overload is not None and self.metrics is not None \
                and self.overload.busy() >= self.overload.limit:
            # gRPC will refuse this call before any handler runs; count it here.
            self.metrics.requests.labels(short_method(method), "RESOURCE_EXHAUSTED").inc()
            self.metrics.rejected.labels("queue").inc()
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        return rewrap(handler, lambda inner: self._behaviour(inner, method))

    def _behaviour(self, inner: Behaviour, method: str) -> Behaviour:
        metrics = self.metrics
        short = short_method(method)
        stamps = method in SEARCH_METHODS
        feedback = self.feedback
        labels = {"method": method}

        def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            rid = request_id(context.invocation_metadata())
            token = current_request.set({"request_id": rid, **labels})
            context.set_trailing_metadata(((HEADER, rid),))
            if metrics is not None:
                metrics.in_flight.inc()
            response = None
            try:
                answer = inner(request, context)
                if stamps:
                    stamp_query_ids(request, answer, feedback)
                response = answer
                return answer
            finally:
                seconds = time.perf_counter() - start
                code = final_code(context, response is not None)
                if metrics is not None:
                    metrics.in_flight.dec()
                    metrics.observe_call(short, code, seconds)
                    if response is not None:
                        metrics.observe_response(response)
                if code != grpc.StatusCode.OK:
                    _log_failure(context, method, rid, code, seconds)
                current_request.reset(token)

        return behaviour


def _log_failure(context: grpc.ServicerContext, method: str, rid: str,
                 code: grpc.StatusCode, seconds: float) -> None:
    details = context.details() or b""  # type: ignore[attr-defined]
    if isinstance(details, bytes):
        details = details.decode("utf-8", "replace")
    log.warning("%s failed: %s: %s", method, code.name, details, extra={
        "request_id": rid, "method": method, "code": code.name,
        "duration_ms": round(seconds * 1000, 3)})
