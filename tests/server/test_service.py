"""Queries through a real gRPC server: results, batches, concurrency, bad input."""

from __future__ import annotations

import io
import threading

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from visearch.v1 import search_pb2

from index.ann.query import SearchParams
from index.ann.search import Searcher
from server.client import (
    QueryFailed,
    SearchClient,
    SearchResult,
    image_request,
    text_request,
    vector_request,
)


def test_image_query_finds_the_image_itself(client, corpus):
    for path in corpus[:5]:
        result = client.search_image(path, k=5)
        assert result.hits[0].path == str(path)
        assert result.hits[0].score == pytest.approx(1.0, abs=1e-3)
        assert len(result.hits) == 5 and result.index_version == 1
        assert result.timings["decode_ms"] > 0 and result.timings["embed_ms"] > 0
        assert result.timings["total_ms"] >= result.timings["search_ms"]


def test_crop_equals_querying_the_cropped_picture(client, corpus):
    box = (10, 5, 70, 60)
    cropped = Image.open(corpus[3]).crop(box)
    encoded = io.BytesIO()
    cropped.save(encoded, "PNG")
    via_crop = client.search_image(corpus[3].read_bytes(), k=5, crop=box)
    via_file = client.search_image(encoded.getvalue(), k=5)
    assert [h.id for h in via_crop.hits] == [h.id for h in via_file.hits]
    full = client.search_image(corpus[3], k=5)
    assert via_crop.hits[0].score != pytest.approx(full.hits[0].score, abs=1e-6)


def test_text_query_returns_k_hits(client):
    result = client.search_text("a red bicycle", k=7)
    assert len(result.hits) == 7 and len({h.id for h in result.hits}) == 7
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)


def test_embedding_query_matches_in_process_search(client, index_dir):
    searcher = Searcher(index_dir)
    rng = np.random.default_rng(3)
    for _ in range(5):
        vector = rng.standard_normal(searcher.dim).astype(np.float32)
        expected = searcher.search(vector[None], SearchParams(k=8))
        result = client.search_vector(vector, k=8)
        assert [h.id for h in result.hits] == expected.ids[0].tolist()
        np.testing.assert_allclose([h.score for h in result.hits], expected.scores[0],
                                   rtol=1e-6, atol=1e-6)
        assert result.timings["decode_ms"] == 0 and result.timings["embed_ms"] == 0


def test_batch_results_equal_single_results(client, corpus):
    requests = [image_request(corpus[0], k=4), text_request("a boat", k=3),
                vector_request(np.ones(64), k=5),
                image_request(corpus[9], k=4, crop=(0, 0, 50, 50)),
                image_request(b"not an image", k=4), text_request("a dog", k=3)]
    batch = client.search_batch(requests)
    assert len(batch) == len(requests)
    for request, answer in zip(requests, batch, strict=True):
        try:
            single: SearchResult | QueryFailed = client.search(request)
        except grpc.RpcError as exc:
            single = QueryFailed(exc.code().name, exc.details())
        if isinstance(single, QueryFailed):
            assert answer == single
        else:
            assert isinstance(answer, SearchResult)
            assert [(h.id, h.path) for h in answer.hits] == [(h.id, h.path) for h in single.hits]
            np.testing.assert_allclose([h.score for h in answer.hits],
                                       [h.score for h in single.hits], atol=1e-5)
    assert isinstance(batch[4], QueryFailed) and batch[4].code == "INVALID_ARGUMENT"


def _big_png(side: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (side, side), (9, 9, 9)).save(out, "PNG")
    return out.getvalue()


MALFORMED = {
    "empty image": (search_pb2.SearchRequest(image=search_pb2.ImageQuery(data=b"")),
                    grpc.StatusCode.INVALID_ARGUMENT, "empty"),
    "undecodable image": (image_request(b"\x89PNG garbage" * 10),
                          grpc.StatusCode.INVALID_ARGUMENT, "not an image"),
    "over the pixel limit": (image_request(_big_png(1100)),
                             grpc.StatusCode.INVALID_ARGUMENT, "exceeds the limit"),
    "wrong dimension": (vector_request(np.ones(5)), grpc.StatusCode.INVALID_ARGUMENT,
                        "64 dimensions"),
    "nan vector": (vector_request(np.full(64, np.nan)), grpc.StatusCode.INVALID_ARGUMENT, "NaN"),
    "no query": (search_pb2.SearchRequest(k=3), grpc.StatusCode.INVALID_ARGUMENT, "exactly one"),
    "two queries": (search_pb2.SearchRequest(text="a", embedding=search_pb2.Embedding(
        values=[1.0] * 64)), grpc.StatusCode.INVALID_ARGUMENT, "exactly one"),
    "k too large": (text_request("x", k=100_000), grpc.StatusCode.INVALID_ARGUMENT, "k must"),
    "empty text": (text_request("  "), grpc.StatusCode.INVALID_ARGUMENT, "empty"),
    "nprobe on a flat index": (text_request("x", nprobe=4), grpc.StatusCode.INVALID_ARGUMENT,
                               "nprobe"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_requests_get_status_codes_and_the_server_lives(client, corpus, name):
    request, code, needle = MALFORMED[name]
    with pytest.raises(grpc.RpcError) as info:
        client.search(request)
    assert info.value.code() == code, info.value.details()
    assert needle in info.value.details()
    assert client.search_image(corpus[1], k=1).hits[0].path == str(corpus[1])


def test_bad_crop_box_outside_the_image(client, corpus):
    with pytest.raises(grpc.RpcError) as info:
        client.search_image(corpus[0], crop=(0, 0, 5000, 10))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "crop box" in info.value.details()


def test_oversized_message_is_resource_exhausted(server, corpus):
    with SearchClient(f"127.0.0.1:{server.port}", max_message_bytes=64 * 1024 * 1024) as big:
        with pytest.raises(grpc.RpcError) as info:
            big.search_image(b"\0" * (17 * 1024 * 1024))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert big.search_image(corpus[2], k=1).hits[0].path == str(corpus[2])


def test_expired_deadline_leaves_the_server_answering(client, corpus):
    # The server side of deadlines (DeadlineExceededError before the model runs) is
    # tested on the service in test_batcher.py; here: the status, then a normal answer.
    with pytest.raises(grpc.RpcError) as info:
        client.search(image_request(corpus[0]), timeout=0.0001)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert client.search_image(corpus[0], k=1).hits[0].path == str(corpus[0])


def test_concurrent_clients_get_sequential_answers(server, corpus):
    rng = np.random.default_rng(0)
    requests = []
    for i in range(50):
        kind = i % 3
        if kind == 0:
            requests.append(image_request(corpus[i % len(corpus)], k=5))
        elif kind == 1:
            requests.append(text_request(f"picture number {i}", k=5))
        else:
            requests.append(vector_request(rng.standard_normal(64), k=5))
    target = f"127.0.0.1:{server.port}"
    with SearchClient(target) as sequential:
        expected = [[h.id for h in sequential.search(r).hits] for r in requests]
    batches_before = server.servicer.service.model.batcher.batches
    failures: list[BaseException] = []
    answers: dict[int, list[list[int]]] = {}

    def worker(n: int) -> None:
        try:
            with SearchClient(target) as own:
                answers[n] = [[h.id for h in own.search(r).hits] for r in requests]
        except BaseException as exc:  # noqa: BLE001
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not failures, failures[:3]
    assert len(answers) == 32
    for got in answers.values():
        assert got == expected
    batcher = server.servicer.service.model.batcher
    embedded = 32 * sum(1 for r in requests if not r.HasField("embedding"))
    assert batcher.batches - batches_before < embedded  # queries shared forward passes


def test_info_describes_what_is_served(client, index_dir):
    info = client.info()
    searcher = Searcher(index_dir)
    assert info["model"] == "tiny" and info["untrained"] is True
    assert info["dim"] == 64 and int(info["vector_count"]) == searcher.ntotal == 40
    assert info["index_spec"] == "Flat" and info["exact"] is True
    assert info["format_version"] == 1 and info["index_version"] == 1
    assert info["weights_sha256"] == searcher.manifest.model.weights_sha256


def test_stock_health_stub_and_reflection(server):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "visearch.v1.VisualSearch"):
            status = stub.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {"visearch.v1.VisualSearch", "grpc.health.v1.Health"} <= services
        proto = database.FindFileContainingSymbol("visearch.v1.VisualSearch")
        assert [m.name for m in proto.service[0].method] == ["Search", "SearchBatch", "Info",
                                                              "Upsert", "Delete"]
