"""The server as a process under abuse: SIGTERM under load, and memory under huge images.
Bounded in count and time, loopback only."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import grpc
import pytest
from PIL import Image

from server.client import SearchClient, image_request
from tests.conftest import ROOT, cli_env


def start_server(index_dir, tmp_path, *extra: str) -> tuple[subprocess.Popen, str]:
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", str(index_dir), "--port", "0",
         "--port-file", str(port_file), "--device", "cpu", *extra],
        cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"server did not start: {proc.communicate()[1][-2000:]}")
        time.sleep(0.05)
    return proc, f"127.0.0.1:{port_file.read_text().strip()}"


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process, from /proc."""
    fields = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


@pytest.mark.slow
def test_sigterm_with_100_batches_in_flight_cancels_none(index_dir, corpus, tmp_path):
    proc, target = start_server(index_dir, tmp_path, "--grace", "30")
    requests = [image_request(corpus[i % len(corpus)], k=5) for i in range(20)]
    codes: Counter[str] = Counter()
    lock = threading.Lock()

    def call(delay: float) -> None:
        time.sleep(delay)
        with SearchClient(target, timeout=60) as client:
            try:
                answers = client.search_batch(requests)
                code = "OK" if all(not hasattr(a, "code") for a in answers) else "PARTIAL"
            except grpc.RpcError as exc:
                code = exc.code().name
        with lock:
            codes[code] += 1

    in_flight = [threading.Thread(target=call, args=(0.0,)) for _ in range(100)]
    for t in in_flight:
        t.start()
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    during_drain = [threading.Thread(target=call, args=(0.1,)) for _ in range(10)]
    for t in during_drain:
        t.start()
    for t in in_flight + during_drain:
        t.join(120)
    assert proc.wait(timeout=60) == 0
    assert codes["CANCELLED"] == 0, codes
    assert codes["OK"] >= 100 and set(codes) <= {"OK", "UNAVAILABLE"}, codes
    with pytest.raises(grpc.RpcError) as caught, SearchClient(target, timeout=5) as client:
        client.info()
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # after the port closed


@pytest.mark.slow
def test_sixteen_huge_images_at_once_keep_memory_bounded(index_dir, tmp_path):
    image = Image.new("RGB", (6300, 6300), (120, 180, 40))  # 39.7 MP, under --max-pixels
    encoded = io.BytesIO()
    image.save(encoded, "PNG")
    data = encoded.getvalue()
    del image
    proc, target = start_server(index_dir, tmp_path, "--max-decode-megapixels", "100")
    try:
        with SearchClient(target, timeout=120) as client:
            client.search_text("warm up", k=1)
        before, _ = peak_rss_mb(proc.pid)
        codes: Counter[str] = Counter()

        def call() -> None:
            with SearchClient(target, timeout=120) as client:
                try:
                    client.search(image_request(data, k=3))
                    codes["OK"] += 1
                except grpc.RpcError as exc:
                    codes[exc.code().name] += 1

        threads = [threading.Thread(target=call) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        after, peak = peak_rss_mb(proc.pid)
        assert codes["OK"] + codes["RESOURCE_EXHAUSTED"] == 16 and codes["OK"] >= 1, codes
        # 16 x 39.7 MP decoded at once took RSS from 0.9 to 5.6 GB and kept 2.8 GB; within
        # a decode budget, reduced before conversion, and trimmed after, it stays far below:
        # +0.32-0.40 GB with large buffers mmapped (server.admission), +1.0-1.5 GB before,
        # when freed image blocks stayed in the arenas of the RPC threads.
        assert peak - before < 800, (before, peak, after)
        assert after - before < 400, (before, peak, after)
        with SearchClient(target) as client:
            assert client.health() == "SERVING"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
