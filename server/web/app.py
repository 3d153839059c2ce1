"""The FastAPI application: the page, the JSON API and health, over one gRPC client.

Every call goes to the search server through ``SearchClient``; nothing here reads
the index or the image files. gRPC errors become JSON errors (errors.py).
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

import grpc
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.auth import TokenStore
from server.client import SearchClient
from server.web.auth import RequireToken
from server.web.config import WebConfig
from server.web.errors import (
    WebError,
    error_body,
    http_error_handler,
    rpc_error_handler,
    web_error_handler,
)
from server.web.placeholder import placeholder_jpeg
from server.web.queries import parse_search
from server.web.schemas import ErrorOut, HealthOut, HitOut, ImageForm, SearchBody, SearchOut

log = logging.getLogger("visearch.web")

STATIC = resources.files("server.web") / "static"
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (400, 401, 404, 413, 429, 503)}
SEARCH_BODY = {
    "requestBody": {"required": True, "content": {
        "application/json": {"schema": SearchBody.model_json_schema()},
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["image"],
            "properties": {
                "image": {"type": "string", "format": "binary",
                          "description": "JPEG, PNG, WebP... file"},
                "crop": {"type": "string", "example": "10,20,200,180",
                         "description": "LEFT,TOP,RIGHT,BOTTOM pixels after EXIF orientation"},
                **{name: field for name, field in
                   ImageForm.model_json_schema()["properties"].items() if name != "crop"},
            }}},
    }}}


def create_app(client: SearchClient, config: WebConfig = WebConfig()) -> FastAPI:
    """The application serving ``client``'s server; the caller owns and closes the client."""
    app = FastAPI(title="visearch", version="1", openapi_url="/v1/openapi.json",
                  docs_url=None, redoc_url=None,  # their pages load scripts from a CDN
                  description="Visual search over HTTP: the JSON face of the gRPC service.")
    app.add_exception_handler(WebError, web_error_handler)
    app.add_exception_handler(grpc.RpcError, rpc_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    store = TokenStore(config.token_file) if config.token_file else None
    api = [Depends(RequireToken(store))]
    cache = "private, max-age=3600" if store else "public, max-age=86400"

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.post("/v1/search", response_model=SearchOut, responses=ERRORS, dependencies=api,
              openapi_extra=SEARCH_BODY, summary="Search by image, text, embedding or id")
    async def search(request: Request) -> dict[str, Any]:
        """An image as multipart/form-data (field ``image``, optional ``crop``), or JSON
        with exactly one of ``text``, ``embedding`` or ``like_id``; ``k``, ``nprobe`` and
        ``refine_factor`` with either."""
        search_request, echo = await parse_search(request, config.max_upload_bytes)
        result = await run_in_threadpool(client.search, search_request,
                                         config.request_timeout)
        hits = [HitOut(id=h.id, path=h.path, score=h.score, thumb=f"/v1/thumb/{h.id}",
                       collapsed_ids=h.collapsed_ids, fields=h.fields) for h in result.hits]
        return {"hits": hits, "timings": result.timings,
                "index_version": result.index_version,
                "next_page_token": result.next_page_token, "query_id": result.query_id,
                "query": echo}

    @app.get("/v1/info", responses=ERRORS, dependencies=api, summary="What is being served")
    def info() -> dict[str, Any]:
        return client.info()

    @app.get("/v1/thumb/{image_id}", responses={**ERRORS, 200: {"content": {"image/jpeg": {}}}},
             response_class=Response, dependencies=api, summary="JPEG thumbnail of a hit")
    def thumb(image_id: int, size: int = Query(256, ge=16, le=1024)) -> Response:
        """Only ids of indexed images; an image that can no longer be read or decoded
        within the limits gets a placeholder, with the reason in ``X-Visearch-Error``."""
        try:
            jpeg, _path = client.thumbnail(image_id, size)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                raise
            return Response(placeholder_jpeg(size), media_type="image/jpeg",
                            headers={"Cache-Control": "no-store",
                                     "X-Visearch-Error": _header_text(exc.details() or "")})
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": cache})

    @app.get("/healthz", response_model=HealthOut, summary="Liveness: the server answers")
    def healthz() -> JSONResponse:
        status = _health(client)
        return JSONResponse({"status": status}, 503 if status == "UNREACHABLE" else 200)

    @app.get("/readyz", response_model=HealthOut, summary="Readiness: the server is SERVING")
    def readyz() -> JSONResponse:
        status = _health(client)
        return JSONResponse({"status": status}, 200 if status == "SERVING" else 503)

    app.add_exception_handler(RequestValidationError, _invalid_parameters)
    return app


async def _invalid_parameters(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own parameter checks (path and query) answer like every other error."""
    assert isinstance(exc, RequestValidationError)
    message = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                        for e in exc.errors())
    return JSONResponse(error_body("INVALID_ARGUMENT", message), 400)


def _health(client: SearchClient) -> str:
    try:
        return client.health()
    except grpc.RpcError as exc:
        log.warning("health check of the search server failed: %s", exc.code())
        return "UNREACHABLE"


def _header_text(text: str) -> str:
    """HTTP header values are Latin-1 without line breaks."""
    return " ".join(text.encode("latin-1", "backslashreplace").decode("latin-1").split())[:300]
