"""Errors of the HTTP side as JSON: the gRPC status code name and a matching HTTP status.

One table, so `curl` users, the page and the gRPC client see the same code names.
"""

from __future__ import annotations

import grpc
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.errors import VisearchError

# The mapping of google.rpc.Code to HTTP, as Google's own HTTP APIs use it.
HTTP_STATUS: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


class WebError(VisearchError):
    """An error answered as ``{"error": {"code": ..., "message": ...}}``."""

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or HTTP_STATUS.get(code, 500)


def from_rpc(exc: grpc.RpcError) -> WebError:
    code = exc.code() if hasattr(exc, "code") else None
    name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return WebError(name, details or name)


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


async def web_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WebError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(error_body(exc.code, exc.message), exc.status, headers=headers)


CODE_OF_STATUS = {404: "NOT_FOUND", 405: "UNIMPLEMENTED", 401: "UNAUTHENTICATED",
                  400: "INVALID_ARGUMENT", 413: "RESOURCE_EXHAUSTED"}


async def http_error_handler(_request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (no such route, wrong method) in the same JSON shape."""
    assert isinstance(exc, StarletteHTTPException)
    code = CODE_OF_STATUS.get(exc.status_code, "UNKNOWN")
    return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)


async def rpc_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, grpc.RpcError)
    return await web_error_handler(request, from_rpc(exc))
