"""Every endpoint of the JSON API, good and bad input, against a real gRPC server."""

from __future__ import annotations

import io
import socket

import pytest
from PIL import Image

from server.web.config import WebConfig
from tests.server.secure import running, secret
from tests.server.web.conftest import app_for, close


def upload(web, path, **fields):
    with open(path, "rb") as handle:
        return web.post("/v1/search", files={"image": (path.name, handle.read())},
                        data={k: str(v) for k, v in fields.items()})


def error_of(response) -> str:
    return response.json()["error"]["code"]


def test_page_and_its_static_files(web):
    page = web.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/static/app.js" in page.text and "cdn" not in page.text.lower()
    for name in ("app.js", "style.css"):
        assert web.get(f"/static/{name}").status_code == 200


def test_info_names_the_untrained_model(web, index_dir):
    info = web.get("/v1/info").json()
    assert info["model"] == "tiny" and info["untrained"] is True
    assert info["vector_count"] == "40" or int(info["vector_count"]) == 40


def test_health_and_readiness(web):
    assert web.get("/healthz").json() == {"status": "SERVING"}
    assert web.get("/readyz").status_code == 200


def test_unreachable_server_is_503_everywhere():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    http = app_for(dead)
    try:
        assert http.get("/healthz").status_code == 503
        assert http.get("/readyz").json() == {"status": "UNREACHABLE"}
        response = http.get("/v1/info")
        assert response.status_code == 503 and error_of(response) == "UNAVAILABLE"
    finally:
        close(http)


def test_image_upload_finds_its_twin(web, corpus):
    response = upload(web, corpus[7], k=5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["hits"][0]["path"] == corpus[7].name
    assert body["hits"][0]["thumb"] == f"/v1/thumb/{body['hits'][0]['id']}"
    assert body["query"] == {"kind": "image", "k": 5, "nprobe": None, "refine_factor": None,
                             "crop": None, "text": None, "like_id": None}


def test_crop_is_sent_and_equals_the_grpc_crop(web, client, corpus):
    response = upload(web, corpus[2], k=3, crop="10,5,60,50")
    assert response.status_code == 200, response.text
    assert response.json()["query"]["crop"] == [10, 5, 60, 50]
    expected = client.search_image(corpus[2], k=3, crop=(10, 5, 60, 50))
    assert [h["id"] for h in response.json()["hits"]] == [h.id for h in expected.hits]


@pytest.mark.parametrize("fields,code", [
    ({"crop": "0,0,5000,5000"}, "INVALID_ARGUMENT"),   # outside the image: gRPC's verdict
    ({"crop": "1,2,3"}, "INVALID_ARGUMENT"),
    ({"crop": "a,b,c,d"}, "INVALID_ARGUMENT"),
    ({"k": "0"}, "INVALID_ARGUMENT"),
    ({"k": "100000"}, "INVALID_ARGUMENT"),            # over --max-k: gRPC's verdict
    ({"surprise": "1"}, "INVALID_ARGUMENT"),
])
def test_bad_image_queries_are_400(web, corpus, fields, code):
    response = upload(web, corpus[0], **fields)
    assert response.status_code == 400 and error_of(response) == code, response.text


def test_not_an_image_is_400(web, tmp_path):
    bogus = tmp_path / "x.jpg"
    bogus.write_bytes(b"not an image at all")
    response = upload(web, bogus)
    assert response.status_code == 400 and "image" in response.json()["error"]["message"]


def test_multipart_without_image_field(web):
    response = web.post("/v1/search", files={"other": ("a", b"x")})
    assert response.status_code == 400 and "'image'" in response.json()["error"]["message"]


def test_text_query(web):
    body = web.post("/v1/search", json={"text": "a red square", "k": 4}).json()
    assert len(body["hits"]) == 4 and body["query"]["kind"] == "text"
    # The answer's query id, for Feedback calls: a fresh one per answer.
    again = web.post("/v1/search", json={"text": "a red square", "k": 4}).json()
    assert len(body["query_id"]) == 32 and again["query_id"] != body["query_id"]


def test_embedding_query_and_wrong_dimension(web, client, corpus):
    dim = int(client.info()["dim"])
    assert len(web.post("/v1/search", json={"embedding": [0.1] * dim, "k": 3}).json()["hits"]) == 3
    response = web.post("/v1/search", json={"embedding": [0.1] * (dim + 1)})
    assert response.status_code == 400 and "dimensions" in response.json()["error"]["message"]


def test_like_id_leaves_the_image_itself_out(web, corpus):
    first = upload(web, corpus[4], k=1).json()["hits"][0]
    body = web.post("/v1/search", json={"like_id": first["id"], "k": 5}).json()
    assert len(body["hits"]) == 5 and first["id"] not in [h["id"] for h in body["hits"]]
    response = web.post("/v1/search", json={"like_id": 99_999})
    assert response.status_code == 404 and error_of(response) == "NOT_FOUND"


@pytest.mark.parametrize("body", [
    {}, {"text": "a", "like_id": 1}, {"text": "a", "k": 0}, {"text": "a", "nprobe": 0},
    {"text": "a", "unknown": 1}, [1, 2], {"text": 5},
])
def test_bad_json_queries_are_400(web, body):
    response = web.post("/v1/search", json=body)
    assert response.status_code == 400 and error_of(response) == "INVALID_ARGUMENT", response.text


def test_body_that_is_not_json_and_other_content_types(web):
    response = web.post("/v1/search", content=b"{nope",
                        headers={"content-type": "application/json"})
    assert response.status_code == 400
    response = web.post("/v1/search", content=b"x", headers={"content-type": "text/plain"})
    assert response.status_code == 415


def test_upload_over_the_web_limit_is_413(server, corpus):
    http = app_for(f"127.0.0.1:{server.port}", WebConfig(max_upload_bytes=1000))
    try:
        response = upload(http, corpus[0])
        assert response.status_code == 413 and error_of(response) == "RESOURCE_EXHAUSTED"
    finally:
        close(http)


def test_grpc_resource_exhausted_is_429(server, corpus):
    http = app_for(f"127.0.0.1:{server.port}", max_message_bytes=2000)
    try:
        response = upload(http, corpus[0])
        assert response.status_code == 429 and error_of(response) == "RESOURCE_EXHAUSTED"
    finally:
        close(http)


def test_thumbnail_of_a_hit(web, corpus):
    hit = upload(web, corpus[1], k=1).json()["hits"][0]
    response = web.get(f"{hit['thumb']}?size=48")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(response.content)).size) == 48
    assert "max-age" in response.headers["cache-control"]


@pytest.mark.parametrize("url,status", [
    ("/v1/thumb/99999", 404), ("/v1/thumb/-1", 404), ("/v1/thumb/0?size=5", 400),
    ("/v1/thumb/0?size=99999", 400), ("/v1/thumb/abc", 400), ("/v1/thumb/..%2F..%2Fetc", 404),
])
def test_thumbnail_bad_requests(web, url, status):
    response = web.get(url)
    assert response.status_code == status and "error" in response.json()


def test_openapi_documents_both_request_shapes(web):
    spec = web.get("/v1/openapi.json").json()
    content = spec["paths"]["/v1/search"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(content)
    assert {"/v1/info", "/v1/thumb/{image_id}", "/healthz", "/readyz"} <= set(spec["paths"])


def test_web_token_guards_the_api_but_not_the_page(server, tmp_path):
    tokens = secret(tmp_path, "web-tokens", "web-secret\n")
    http = app_for(f"127.0.0.1:{server.port}", WebConfig(token_file=tokens))
    try:
        assert http.get("/").status_code == 200 and http.get("/readyz").status_code == 200
        missing = http.get("/v1/info")
        assert missing.status_code == 401 and error_of(missing) == "UNAUTHENTICATED"
        assert missing.headers["www-authenticate"] == "Bearer"
        assert http.get("/v1/info", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert http.get("/v1/info", headers={"Authorization": "Bearer web-secret"}).status_code \
            == 200
        http.cookies.set("visearch_token", "web-secret")
        assert http.get("/v1/info").status_code == 200
    finally:
        close(http)


def test_token_is_forwarded_to_a_guarded_grpc_server(index_dir, tmp_path):
    tokens = secret(tmp_path, "grpc-tokens", "grpc-secret\n")
    with running(index_dir, token_file=tokens) as guarded:
        target = f"127.0.0.1:{guarded.port}"
        without, with_token = app_for(target), app_for(target, token="grpc-secret")
        try:
            response = without.get("/v1/info")
            assert response.status_code == 401 and error_of(response) == "UNAUTHENTICATED"
            assert with_token.get("/v1/info").status_code == 200
        finally:
            close(without)
            close(with_token)


def test_unknown_routes_and_methods_answer_json(web):
    assert error_of(web.get("/v1/nothing")) == "NOT_FOUND"
    response = web.get("/v1/search")
    assert response.status_code == 405 and "error" in response.json()


def test_reranking_options_pass_through_json_and_multipart(web, corpus):
    """Filters, exclusions, pages and fields reach the server from both body kinds."""
    first = web.post("/v1/search", json={"like_id": 3, "k": 4, "fields": ["ext"]})
    assert first.status_code == 200, first.text
    ids = [h["id"] for h in first.json()["hits"]]
    assert all(h["fields"].get("ext") for h in first.json()["hits"])
    skipped = web.post("/v1/search", json={"like_id": 3, "k": 4, "exclude_ids": ids[:2]})
    assert [h["id"] for h in skipped.json()["hits"]][:2] == ids[2:4]
    page = web.post("/v1/search", json={"like_id": 3, "k": 2, "offset": 2})
    assert [h["id"] for h in page.json()["hits"]] == ids[2:4]
    assert page.json()["next_page_token"]
    last = web.post("/v1/search", json={"text": "a red circle", "k": 15, "offset": 30}).json()
    assert len(last["hits"]) == 10 and last["next_page_token"] == ""  # 40 images: the end
    bad = web.post("/v1/search", json={"like_id": 3, "filter": "ext = "})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_ARGUMENT"
    upload = web.post("/v1/search", data={"k": "3", "exclude_ids": f"{ids[0]},{ids[1]}"},
                      files={"image": ("q.png", corpus[3].read_bytes(), "image/png")})
    assert upload.status_code == 200, upload.text
    assert not {ids[0], ids[1]} & {h["id"] for h in upload.json()["hits"]}
