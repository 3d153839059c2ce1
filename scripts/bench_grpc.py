"""Benchmark 3: gRPC latency and QPS against the same work in-process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import Section, latencies_ms, pct, table
from visearch.v1 import search_pb2

from index.ann.query import SearchParams
from server.app import configure_threads
from server.client import SearchClient
from server.query import Query
from server.service import load_service

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def server_process(index_dir: Path, work: Path, device: str) -> Iterator[str]:
    """`visearch serve` in its own process, as deployed; yields host:port."""
    port_file = work / f"port-{index_dir.name}"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", str(index_dir),
                             "--port", "0", "--port-file", str(port_file), "--device", device],
                            cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server for {index_dir} did not start")
            time.sleep(0.1)
        yield f"127.0.0.1:{int(port_file.read_text())}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def concurrent_qps(call: Callable[[Any], object], items: list[Any], threads: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(call, items))
    return len(items) / (time.perf_counter() - start)


def compare(kind: str, index_dir: Path, queries: list[Query], work: Path, device: str,
            threads: int) -> dict[str, float]:
    configure_threads()  # the server's thread settings, for the in-process side too
    service = load_service(index_dir, device=device)
    try:
        local = latencies_ms(lambda q: service.search(q), queries)
        local_qps = concurrent_qps(service.search, queries, threads)
    finally:
        service.close()
    with server_process(index_dir, work, device) as target, SearchClient(target) as client:
        requests = [to_request(q) for q in queries]
        responses = []
        remote = latencies_ms(lambda r: responses.append(client.search(r)), requests)
        server_side = np.array([r.timings["total_ms"] for r in responses])
        remote_qps = concurrent_qps(client.search, requests, threads)
        empty = latencies_ms(lambda _: client.stub.Info(search_pb2.InfoRequest()), requests)
    return {
        "kind": kind, "queries": len(queries),
        "local_p50": pct(local, 50), "local_p99": pct(local, 99), "local_qps": local_qps,
        "grpc_p50": pct(remote, 50), "grpc_p99": pct(remote, 99), "grpc_qps": remote_qps,
        "p50_overhead_ms": pct(remote, 50) - pct(local, 50),
        "empty_rpc_p50": pct(empty, 50),
        "server_side_p50": pct(server_side, 50),
        "grpc_p99_over_p50": pct(remote, 99) / pct(remote, 50),
    }


def to_request(query: Query) -> Any:
    from server.client import image_request, vector_request

    if query.vector is not None:
        return vector_request(query.vector, k=query.params.k)
    return image_request(query.image or b"", k=query.params.k)


def run(vector_index: Path, image_index: Path, image_files: list[Path], count: int,
        threads: int, work: Path, device: str, seed: int = 0) -> Section:
    from index.store.directory import IndexDirectory

    dim = IndexDirectory(vector_index).manifest().dim
    rng = np.random.default_rng(seed)
    params = SearchParams(k=10)
    vectors = [Query(params, vector=v) for v in rng.standard_normal((count, dim))
               .astype(np.float32)]
    images = [Query(params, image=image_files[i % len(image_files)].read_bytes())
              for i in range(count)]
    results = [compare("embedding", vector_index, vectors, work, device, threads),
               compare("image (tiny model)", image_index, images, work, device, threads)]
    rows = [[r["kind"], r["local_p50"], r["grpc_p50"], r["p50_overhead_ms"], r["empty_rpc_p50"],
             r["server_side_p50"],
             r["local_p99"], r["grpc_p99"], r["grpc_p99_over_p50"], r["local_qps"], r["grpc_qps"]]
            for r in results]
    markdown = "\n\n".join([
        f"{count} sequential queries (k=10, index defaults) for latency, then the same "
        f"{count} from {threads} threads for QPS. *in-process* calls `SearchService.search` "
        f"(the object the servicer wraps: decode, micro-batched embedding, search, paths) in "
        f"the benchmark process with the server's thread settings; *gRPC* sends the same "
        f"queries to `visearch serve` in its own process over 127.0.0.1. *empty RPC* is the "
        f"p50 of an `Info` call on the same connection: the gRPC Python round trip on this "
        f"machine before any search work; *server-side* is the service time the server "
        f"reports in each response. Targets: p50 overhead <= 0.5 ms, gRPC p99/p50 <= 3.",
        table(["queries", "p50 ms in-process", "p50 ms gRPC", "p50 overhead ms",
               "empty RPC p50 ms", "server-side p50 ms",
               "p99 ms in-process", "p99 ms gRPC", "gRPC p99/p50", f"QPS in-process "
               f"({threads} threads)", f"QPS gRPC ({threads} clients)"], rows),
    ])
    return Section("gRPC overhead", markdown, {"rows": results})
