"""Serving within the documented limits: each limit answered with its code, the server alive."""

from __future__ import annotations

import io
import threading
import time

import grpc
import numpy as np
import pytest
from PIL import Image

from server.admission import OverloadedError, PixelBudget
from server.app import SearchServer
from server.client import SearchClient, vector_request, with_options
from server.config import ServerConfig, ServiceConfig
from server.transport import PortInUseError


def test_candidates_to_rerank_are_bounded(ivf_server):
    with SearchClient(f"127.0.0.1:{ivf_server.port}") as client:
        started = time.perf_counter()
        with pytest.raises(grpc.RpcError) as caught:
            client.search_vector(np.ones(64), k=1000, refine_factor=100_000)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "max-candidates" in caught.value.details()
        assert time.perf_counter() - started < 2
        every_list = ivf_server.servicer.service.index.current.manifest.index.nlist
        # k = 1000 re-ranks the tier ending at 1024: refine 9 reads 9,216 candidates,
        # refine 10 would read 10,240, over the default limit of 10,000.
        hits = client.search_vector(np.ones(64), k=1000, refine_factor=9, nprobe=every_list)
        assert len(hits.hits) == 1000
        with pytest.raises(grpc.RpcError) as deep:
            client.search_vector(np.ones(64), k=1000, refine_factor=10)
        assert "k = 1,000 needs 10,240 candidates (its tier ends at 1,024" in deep.value.details()
        page = client.search_vector(np.ones(64), k=30, refine_factor=5).next_page_token
        assert len(client.search_vector(np.ones(64), k=1000, refine_factor=5,
                                        nprobe=every_list).hits) == 1000
        with pytest.raises(grpc.RpcError) as paged:  # offset 30 + k 1000: tier 2048 * 5
            client.search(with_options(vector_request(np.ones(64), k=1000, refine_factor=5),
                                       page_token=page))
        assert paged.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "offset + k = 1,030 needs 10,240 candidates" in paged.value.details()


def test_a_batch_of_more_than_250k_hits_is_answered(ivf_server):
    rng = np.random.default_rng(0)
    every_list = ivf_server.servicer.service.index.current.manifest.index.nlist
    requests = [vector_request(v, k=1000, nprobe=every_list)
                for v in rng.standard_normal((260, 64))]
    with SearchClient(f"127.0.0.1:{ivf_server.port}", timeout=120) as client:
        answers = client.search_batch(requests)
    assert sum(len(a.hits) for a in answers) == 260_000  # type: ignore[union-attr]
    assert all(a.hits[0].path.startswith("/synthetic/") for a in answers)  # type: ignore[union-attr]


def test_long_text_is_refused_quickly(client):
    started = time.perf_counter()
    with pytest.raises(grpc.RpcError) as caught:
        client.search_text("a red bicycle " * 50_000, k=3)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max-text-bytes" in caught.value.details()
    assert time.perf_counter() - started < 2
    assert len(client.search_text("a red bicycle", k=3).hits) == 3


def test_pixel_budget_queues_then_refuses():
    budget = PixelBudget(100)
    with budget.admit(80, timeout=1):
        with pytest.raises(OverloadedError, match="max-decode-megapixels"):
            with budget.admit(30, timeout=0.05):
                pass
        done = threading.Event()

        def waiter() -> None:
            with budget.admit(30, timeout=5):
                done.set()

        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.05)
        assert not done.is_set()  # waits while the budget is full
    thread.join(5)
    assert done.is_set() and budget.in_use == 0
    with budget.admit(10**9, timeout=0):  # more than the capacity still runs, alone
        assert budget.in_use == 100


def test_a_busy_decode_budget_answers_resource_exhausted(index_dir):
    config = ServerConfig(index_dir=index_dir, port=0, device="cpu", drain_seconds=0.0,
                          service=ServiceConfig(max_decode_pixels=1_000_000,
                                                decode_wait_seconds=0.0))
    running = SearchServer(config)
    running.start()
    running.load()
    try:
        image = Image.new("RGB", (1000, 1000), (200, 30, 30))
        data = io.BytesIO()
        image.save(data, "PNG")
        service = running.servicer.service
        assert service is not None
        with service.decode_budget.admit(1_000_000, timeout=0):  # another decode holds it all
            with SearchClient(f"127.0.0.1:{running.port}") as client:
                with pytest.raises(grpc.RpcError) as caught:
                    client.search_image(data.getvalue(), k=3)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with SearchClient(f"127.0.0.1:{running.port}") as client:
            assert len(client.search_image(data.getvalue(), k=3).hits) == 3
    finally:
        running.stop(grace=1)


def test_a_second_server_on_a_taken_port_fails(ivf_server, ivf_template):
    second = SearchServer(ServerConfig(index_dir=ivf_template.path, port=ivf_server.port,
                                       device="cpu"))
    with pytest.raises(PortInUseError, match=f"port {ivf_server.port} is in use"):
        second.start()


@pytest.mark.slow
def test_overload_is_refused_at_once_and_recovers(ivf_template):
    config = ServerConfig(index_dir=ivf_template.path, port=0, device="cpu", drain_seconds=0.0,
                          rpc_threads=2, max_queue=2)
    running = SearchServer(config)
    running.start()
    running.load()
    target = f"127.0.0.1:{running.port}"
    rng = np.random.default_rng(1)
    heavy = [vector_request(v, k=1000) for v in rng.standard_normal((200, 64))]
    codes: list[str] = []
    refused_after: list[float] = []
    lock = threading.Lock()

    def burst() -> None:
        started = time.perf_counter()
        with SearchClient(target, timeout=60) as client:
            try:
                client.search_batch(heavy)
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
                with lock:
                    refused_after.append(time.perf_counter() - started)
        with lock:
            codes.append(code)

    try:
        threads = [threading.Thread(target=burst) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert set(codes) == {"OK", "RESOURCE_EXHAUSTED"}, codes
        assert max(refused_after) < 1.0  # refused at once, not after queueing
        time.sleep(1.0)
        with SearchClient(target) as client:
            started = time.perf_counter()
            client.search_vector(np.ones(64), k=10)
            assert time.perf_counter() - started < 0.5  # back to normal within a second
    finally:
        running.stop(grace=1)
