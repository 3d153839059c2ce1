"""Part of benchmark 3: CPU seconds per call, which a shared machine does not blur.

Wall-clock QPS on 2 cores shared with other work moves by 2x between runs; the CPU a
process spends per call does not. For the served embedding query this measures the
server process's CPU per call (from /proc, every thread, over a few thousand calls),
the Python client's, and the in-process CPU per query, so that the QPS ratio the
server could reach is known apart from the clients sharing its cores:

* ratio bound, server alone = in-process CPU / server CPU per call (clients elsewhere);
* ratio bound, clients here = in-process CPU / (server + client CPU per call).

SearchBatch (8 and 32 embeddings per call) is reported per query beside it: a batch
RPC is a different call and does not stand in for the unary target. Each server runs
unpinned and, with more than one core, kept on one core (`serve --cpus`), with the
sequential service-time delta of each.
"""

from __future__ import annotations

import os
import resource
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from visearch.v1 import search_pb2, search_pb2_grpc

BATCHES = (8, 32)
REPEATS = 10  # each query is sent this often: 300 queries give 3,000 calls per measurement
CLIENTS = 8
TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """User + system seconds of every thread of ``pid``, ended ones included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def threads_calling(method: Callable[..., Any], items: Sequence[Any], clients: int) -> None:
    def client(share: Sequence[Any]) -> None:
        for item in share:
            method(item, timeout=60)

    threads = [threading.Thread(target=client, args=(items[i::clients],))
               for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def per_call(pid: int | None, work: Callable[[], object], calls: int) -> dict[str, float]:
    """ms of CPU per call: the server's (``pid``) and this process's."""
    server, mine = process_cpu(pid) if pid else 0.0, own_cpu()
    work()
    return {"server_ms": 1000 * ((process_cpu(pid) - server) if pid else 0.0) / calls,
            "client_ms": 1000 * (own_cpu() - mine) / calls}


def served_costs(target: str, requests: Sequence[Any]) -> dict[str, float]:
    """One server: CPU per empty Info and per Search at ``CLIENTS`` clients, per query of
    SearchBatch, and the sequential service-time delta's server side (p50 total_ms)."""
    n = len(requests)
    with grpc.insecure_channel(target) as channel:
        stub = search_pb2_grpc.VisualSearchStub(channel)
        threads_calling(stub.Search, requests[:200], 1)  # warm
        pid = stub.Info(search_pb2.InfoRequest(), timeout=60).pid
        info = per_call(pid, lambda: threads_calling(
            stub.Info, [search_pb2.InfoRequest()] * n, CLIENTS), n)
        search = per_call(pid, lambda: threads_calling(stub.Search, requests, CLIENTS), n)
        out = {"info_server_ms": info["server_ms"], "search_server_ms": search["server_ms"],
               "search_client_ms": search["client_ms"]}
        for size in BATCHES:
            batches = [search_pb2.SearchBatchRequest(requests=requests[i:i + size])
                       for i in range(0, n, size)]
            cost = per_call(pid, lambda b=batches: threads_calling(
                stub.SearchBatch, b, CLIENTS), n)
            out[f"batch{size}_server_ms"] = cost["server_ms"]
        out["server_total_p50"] = statistics.median(
            stub.Search(r, timeout=60).timings.total_ms for r in requests[:500])
    return out


def local_costs(service: Any, queries: Sequence[Any]) -> dict[str, float]:
    """In-process CPU per query (``CLIENTS`` threads, faiss one thread each, as served),
    per query of search_many in batches, and the sequential p50 latency."""
    import faiss

    n = len(queries)

    def search(query: Any, timeout: float | None = None) -> object:
        faiss.omp_set_num_threads(1)
        return service.search(query, timeout)

    out = {"cpu_ms": per_call(None, lambda: threads_calling(search, queries, CLIENTS),
                              n)["client_ms"]}
    for size in BATCHES:
        out[f"many{size}_cpu_ms"] = per_call(None, lambda s=size: [
            service.search_many(queries[i:i + s]) for i in range(0, n, s)], n)["client_ms"]
    latencies = []
    for query in queries[:500]:
        start = time.perf_counter()
        service.search(query)
        latencies.append((time.perf_counter() - start) * 1000)
    out["p50_ms"] = statistics.median(latencies)
    return out


def compare_cpu(index_dir: Path, queries: Sequence[Any], requests: Sequence[Any],
                work: Path, device: str) -> dict[str, Any]:
    """In-process, the server as started by default, and (2+ cores) kept on one core."""
    from bench_grpc import server_process

    from server.app import configure_threads
    from server.service import load_service

    configure_threads()
    service = load_service(index_dir, device=device)
    try:
        local = local_costs(service, queries)
        servers: dict[str, dict[str, float]] = {}
        pinned = [] if len(os.sched_getaffinity(0)) < 2 else [
            f"--cpus {max(os.sched_getaffinity(0))}"]
        for name in ["default", *pinned]:
            extra = [] if name == "default" else name.split()
            with server_process(index_dir, work, device, extra=extra) as target:
                servers[name] = served_costs(target, requests)
    finally:
        service.close()
    return {"local": local, "servers": servers}


def rows(costs: dict[str, Any]) -> list[list[object]]:
    local = costs["local"]
    out: list[list[object]] = []
    for name, s in costs["servers"].items():
        out.append([
            f"`serve` ({name})", s["info_server_ms"], s["search_server_ms"],
            s["search_client_ms"], local["cpu_ms"],
            local["cpu_ms"] / s["search_server_ms"],
            local["cpu_ms"] / (s["search_server_ms"] + s["search_client_ms"]),
            s["server_total_p50"] - local["p50_ms"],
            *[s[f"batch{b}_server_ms"] for b in BATCHES],
            *[local[f"many{b}_cpu_ms"] for b in BATCHES]])
    return out


HEADERS = ["server", "empty Info: server CPU ms/call",
           f"Search, {CLIENTS} clients: server CPU ms/call", "client CPU ms/call",
           "in-process CPU ms/query", "QPS ratio bound, server alone",
           "QPS ratio bound, clients on the same cores",
           "service time - in-process, p50 ms (sequential)",
           *[f"SearchBatch of {b}: server CPU ms/query" for b in BATCHES],
           *[f"in-process search_many of {b}: CPU ms/query" for b in BATCHES]]
