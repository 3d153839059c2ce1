"""Start-up, readiness, graceful shutdown and refusal to start, as an operator sees them."""

from __future__ import annotations

import io
import json
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from server.app import SearchServer
from server.client import SearchClient, image_request
from server.config import ServerConfig
from tests.conftest import ROOT, cli_env, run_visearch

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_not_serving_until_loaded(index_dir, corpus):
    server = SearchServer(ServerConfig(index_dir=index_dir, port=0, device="cpu",
                                       drain_seconds=0))
    server.start()
    try:
        with SearchClient(f"127.0.0.1:{server.port}", timeout=10) as client:
            assert client.health() == "NOT_SERVING"
            with pytest.raises(grpc.RpcError) as info:
                client.search_image(corpus[0])
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            server.load()
            assert client.health() == "SERVING"
            assert client.search_image(corpus[0], k=1).hits[0].path == corpus[0].name
    finally:
        server.stop(grace=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slow_batch(count: int = 24) -> list:
    """Big, cheap-to-send images, cropped so they decode at full size: a call that takes a while."""
    y, x = np.mgrid[0:1200, 0:1200]
    gradient = Image.fromarray(((x + y) % 256).astype(np.uint8), "L").convert("RGB")
    out = io.BytesIO()
    gradient.save(out, "PNG")
    return [image_request(out.getvalue(), k=3, crop=(0, 0, 1100, 1100 - i)) for i in range(count)]


def _wait_serving(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            with SearchClient(f"127.0.0.1:{port}", timeout=1) as client:
                if client.health() == "SERVING":
                    return
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise AssertionError("server never became SERVING")


@pytest.mark.slow
def test_sigterm_drains_in_flight_calls_and_exits_zero(index_dir):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", str(index_dir), "--port", str(port),
         "--device", "cpu", "--grace", "30"],
        cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_serving(port, proc)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        statuses: list[int] = []
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())

        def follow() -> None:
            try:
                for update in watch:
                    statuses.append(update.status)
            except grpc.RpcError:
                pass  # the stream ends with the server

        watcher = threading.Thread(target=follow)
        watcher.start()
        outcome: dict = {}

        def in_flight() -> None:
            with SearchClient(f"127.0.0.1:{port}", timeout=60) as client:
                outcome["results"] = client.search_batch(_slow_batch())
                outcome["done"] = time.monotonic()

        caller = threading.Thread(target=in_flight)
        caller.start()
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        caller.join(60)
        assert proc.wait(timeout=60) == 0
        stopped = time.monotonic()
        watcher.join(10)
        channel.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert outcome["done"] > signalled, "the call ended before SIGTERM: make it slower"
    # the open health watch stream did not hold shutdown for the 30 s grace period
    assert stopped - outcome["done"] < 15
    assert len(outcome["results"]) == 24 and all(r.hits for r in outcome["results"])
    assert statuses[0] == SERVING and NOT_SERVING in statuses
    assert "SIGTERM" in proc.stderr.read()


@pytest.mark.slow
def test_refuses_to_start_with_other_weights(index_dir, tmp_path, tiny_embedder):
    state = {k: v + 0.01 for k, v in tiny_embedder.model.state_dict().items()}
    torch.save(state, tmp_path / "other.pt")
    result = run_visearch("serve", str(index_dir), "--port", "0", "--device", "cpu",
                          "--checkpoint", str(tmp_path / "other.pt"), timeout=120)
    assert result.returncode == 1
    assert "weights" in result.stderr and "Traceback" not in result.stderr


def test_refuses_a_directory_that_is_not_an_index(tmp_path):
    result = run_visearch("serve", str(tmp_path), "--port", "0", timeout=120)
    assert result.returncode == 1 and "visearch build" in result.stderr


def test_query_command_table_and_json(server, corpus):
    target = f"127.0.0.1:{server.port}"
    table = run_visearch("query", "--server", target, str(corpus[4]), "-k", "3", check=True)
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["rank", "score", "path"]
    assert lines[1].split()[0] == "1" and lines[1].split()[2] == corpus[4].name
    assert len(lines) == 5 and "index version 1" in lines[-1]
    raw = run_visearch("query", "--server", target, "--text", "a red bicycle", "-k", "5",
                       "--json", check=True)
    payload = json.loads(raw.stdout)
    assert len(payload["hits"]) == 5 and set(payload["hits"][0]) == {"id", "path", "score"}
    cropped = run_visearch("query", "--server", target, str(corpus[4]), "--crop", "0,0,40,40",
                           "--json", check=True)
    assert json.loads(cropped.stdout)["hits"]
    bad = run_visearch("query", "--server", target, "--vector", str(_vector_file(corpus)))
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr


def test_health_command_for_container_checks(server):
    healthy = run_visearch("health", "--server", f"127.0.0.1:{server.port}")
    assert healthy.returncode == 0 and "SERVING" in healthy.stdout
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    down = run_visearch("health", "--server", f"127.0.0.1:{closed}", "--timeout", "2")
    assert down.returncode == 1 and "UNAVAILABLE" in down.stderr


def _vector_file(corpus) -> str:
    path = corpus[0].parent.parent / "short-vector.json"
    path.write_text(json.dumps([0.1, 0.2, 0.3]))
    return str(path)
