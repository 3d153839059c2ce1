"""HTTP search requests -> gRPC SearchRequests: JSON bodies and multipart image uploads.

Validation of the shapes happens here (pydantic); what the index can answer (k
against --max-k, nprobe on an exact index, the image itself) is the gRPC
server's to judge, so both front ends give the same answers.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from visearch.v1 import search_pb2

from server.client import image_request, like_request, text_request, vector_request
from server.web.errors import WebError
from server.web.schemas import ImageForm, QueryEcho, SearchBody

LIST_FIELDS = ("exclude_ids", "exclude_keys", "fields")
FORM_LIMITS = {"max_files": 1, "max_fields": 16, "max_part_size": 64 * 1024}


def invalid(exc: ValidationError | str) -> WebError:
    if isinstance(exc, str):
        return WebError("INVALID_ARGUMENT", exc)
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return WebError("INVALID_ARGUMENT", f"{where}: {first['msg']}")


async def parse_search(request: Request, max_upload_bytes: int
                       ) -> tuple[search_pb2.SearchRequest, QueryEcho]:
    """The gRPC request and its echo for the response; WebError for malformed input."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        return await _from_form(request, max_upload_bytes)
    if kind in ("application/json", ""):
        try:
            data = json.loads(await request.body() or b"null")
        except ValueError as exc:
            raise invalid(f"the body is not JSON: {exc}") from exc
        return from_json(data)
    raise WebError("INVALID_ARGUMENT", f"send application/json or multipart/form-data, "
                   f"not {kind}", status=415)


def from_json(data: Any) -> tuple[search_pb2.SearchRequest, QueryEcho]:
    if not isinstance(data, dict):
        raise invalid("the body must be a JSON object")
    try:
        body = SearchBody.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc) from exc
    given = [name for name in ("text", "embedding", "like_id") if getattr(body, name) is not None]
    if len(given) != 1:
        raise invalid("a JSON query needs exactly one of text, embedding or like_id "
                      f"(images go as multipart/form-data); got {len(given)}")
    params: dict[str, Any] = {"k": body.k, "nprobe": body.nprobe,
                              "refine_factor": body.refine_factor}
    options = body.options()
    if body.text is not None:
        return (text_request(body.text, **params, **options),
                QueryEcho(kind="text", text=body.text, **params))
    if body.like_id is not None:
        return (like_request(body.like_id, **params, **options),
                QueryEcho(kind="like", like_id=body.like_id, **params))
    assert body.embedding is not None
    return (vector_request(body.embedding, **params, **options),
            QueryEcho(kind="embedding", **params))


async def _from_form(request: Request, max_upload_bytes: int
                     ) -> tuple[search_pb2.SearchRequest, QueryEcho]:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_upload_bytes + 64 * 1024:
        raise too_large(max_upload_bytes)
    try:
        form = await request.form(**FORM_LIMITS)
    except Exception as exc:  # noqa: BLE001 - malformed multipart raises several kinds
        raise invalid(f"malformed multipart body: {exc}") from exc
    image = form.get("image")
    if not isinstance(image, UploadFile):
        raise invalid("a multipart query needs a file field named 'image'")
    fields: dict[str, Any] = {k: v for k, v in form.items()
                              if k != "image" and isinstance(v, str) and v != ""}
    for name in LIST_FIELDS:  # a form carries lists as comma-separated text
        if name in fields:
            fields[name] = [v.strip() for v in str(fields[name]).split(",") if v.strip()]
    if "crop" in fields:
        try:
            fields["crop"] = [int(float(v)) for v in str(fields["crop"]).split(",")]
        except ValueError as exc:
            raise invalid("crop wants LEFT,TOP,RIGHT,BOTTOM integers") from exc
    try:
        form_body = ImageForm.model_validate(fields)
    except ValidationError as exc:
        raise invalid(exc) from exc
    data = await image.read(max_upload_bytes + 1)
    if len(data) > max_upload_bytes:
        raise too_large(max_upload_bytes)
    params: dict[str, Any] = {"k": form_body.k, "nprobe": form_body.nprobe,
                              "refine_factor": form_body.refine_factor}
    return (image_request(data, crop=form_body.crop, **params, **form_body.options()),
            QueryEcho(kind="image", crop=form_body.crop, **params))


def too_large(limit: int) -> WebError:
    return WebError("RESOURCE_EXHAUSTED", f"the upload is over the limit of "
                    f"{limit / (1 << 20):g} MiB", status=413)
