"""Part of benchmark 3: embedding-query QPS at N clients, in-process against
`visearch serve --processes P` for several P, in alternating rounds.

Every client has a connection of its own (a channel with a local subchannel pool), as
separate users would: SO_REUSEPORT spreads connections, not calls, so clients sharing
one channel would all reach one process. The clients are threads of this process, or
spread over ``client_processes`` processes (a Python client is bound by its own GIL
too, and so may be the limit rather than the server).
"""

from __future__ import annotations

import multiprocessing
import statistics
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
from visearch.v1 import search_pb2_grpc

from server.config import message_options

ROUNDS = 3


def connections(target: str, count: int) -> list[Any]:
    """``count`` stubs, each on its own TCP connection."""
    options = [*message_options(64 << 20), ("grpc.use_local_subchannel_pool", 1)]
    return [search_pb2_grpc.VisualSearchStub(grpc.insecure_channel(target, options=options))
            for _ in range(count)]


def qps_per_connection(stubs: Sequence[Any], requests: Sequence[Any]) -> float:
    """Client i sends its share of ``requests`` back to back on stub i."""
    def client(stub: Any, share: Sequence[Any]) -> None:
        for request in share:
            stub.Search(request, timeout=60)

    threads = [threading.Thread(target=client, args=(stub, requests[i::len(stubs)]))
               for i, stub in enumerate(stubs)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(requests) / (time.perf_counter() - start)


def _client_process(target: str, payloads: list[bytes], threads: int, go: Any,
                    ready: Any, done: Any) -> None:
    from visearch.v1 import search_pb2

    requests = [search_pb2.SearchRequest.FromString(p) for p in payloads]
    stubs = connections(target, threads)
    qps_per_connection(stubs, requests[: threads * 4])  # warm the connections
    ready.put(True)
    go.wait()
    start = time.perf_counter()
    qps_per_connection(stubs, requests)
    done.put((start, time.perf_counter()))


class ClientProcesses:
    """``count`` spawned client processes with ``threads`` connections each, started once;
    ``qps(requests)`` runs one timed round over all of them."""

    def __init__(self, target: str, count: int, threads: int):
        self.target, self.count, self.threads = target, count, threads
        self.ctx = multiprocessing.get_context("spawn")

    def qps(self, requests: Sequence[Any]) -> float:
        go, ready, done = self.ctx.Event(), self.ctx.Queue(), self.ctx.Queue()
        payloads = [r.SerializeToString() for r in requests]
        procs = [self.ctx.Process(target=_client_process, args=(
            self.target, payloads[i::self.count], self.threads, go, ready, done))
            for i in range(self.count)]
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=120)
        go.set()
        spans = [done.get(timeout=300) for _ in procs]
        for p in procs:
            p.join()
        return len(requests) / (max(e for _, e in spans) - min(s for s, _ in spans))


def compare_processes(index_dir: Path, queries: list[Any], requests: list[Any], work: Path,
                      device: str, threads: int, counts: Sequence[int],
                      client_processes: int = 1) -> dict[str, Any]:
    """Median QPS in-process and per process count, and each count's median ratio."""
    import bench_grpc

    from server.app import configure_threads
    from server.service import load_service

    configure_threads()
    service = load_service(index_dir, device=device)
    local: list[float] = []
    remote: dict[int, list[float]] = {n: [] for n in counts}
    ratios: dict[int, list[float]] = {n: [] for n in counts}
    try:
        with ExitStack() as stack:
            targets = {n: stack.enter_context(
                bench_grpc.server_process(index_dir, work, device, processes=n))
                for n in counts}
            if client_processes > 1:
                clients = {n: ClientProcesses(t, client_processes, threads // client_processes)
                           .qps for n, t in targets.items()}
            else:
                stubs = {n: connections(t, threads) for n, t in targets.items()}
                for n in counts:  # warm every connection
                    qps_per_connection(stubs[n], requests[: threads * 4])
                clients = {n: (lambda r, s=s: qps_per_connection(s, r))
                           for n, s in stubs.items()}
            for _ in range(ROUNDS):
                local.append(bench_grpc.concurrent_qps(service.search, queries, threads))
                for n in counts:
                    remote[n].append(clients[n](requests))
                    ratios[n].append(remote[n][-1] / local[-1])
    finally:
        service.close()
    return {"threads": threads, "client_processes": client_processes,
            "local_qps": statistics.median(local),
            "qps": {n: statistics.median(v) for n, v in remote.items()},
            "ratio": {n: statistics.median(v) for n, v in ratios.items()}}


def rows(result: dict[str, Any]) -> list[list[object]]:
    return [[f"--processes {n}", result["local_qps"], result["qps"][n], result["ratio"][n]]
            for n in result["qps"]]
