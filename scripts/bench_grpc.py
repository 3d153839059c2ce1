"""Benchmark 3: gRPC latency and QPS against the same work in-process, with the targets.

Run alone (builds its own small indexes under --work, kept for reruns):

    python scripts/bench_grpc.py --work /tmp/grpc-bench

or as part of scripts/bench.py. The machine is usually shared: every comparison is
measured in alternating rounds in one run and reported as a ratio or difference.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__":  # run alone: the same imports bench.py arranges
    sys.path[:0] = [str(ROOT), str(ROOT / "protos"), str(ROOT / "scripts")]

import bench_grpc_cpu  # noqa: E402
import bench_grpc_procs  # noqa: E402
import numpy as np  # noqa: E402
from bench_common import Section, latencies_ms, pct, table  # noqa: E402
from visearch.v1 import search_pb2  # noqa: E402

from index.ann.query import SearchParams  # noqa: E402
from server.app import configure_threads  # noqa: E402
from server.client import SearchClient  # noqa: E402
from server.query import Query  # noqa: E402
from server.service import load_service  # noqa: E402

# The goals of issue 12 (gRPC), each checked in the "targets" table.
TARGET_SERVICE_DELTA_MS = 0.1  # server-side service time - the same call in-process (p50)
TARGET_QPS_RATIO = 0.8  # embedding queries, gRPC / in-process, at 8 clients
PROCESS_COUNTS = (1, 2)  # `serve --processes N` compared, clients on connections of their own
CLIENT_PROCESSES = 2  # ...spread over this many client processes (one Python client's GIL caps)
TARGET_IMAGE_P99_MANY_MS = 50.0  # 16 concurrent image-query clients, tiny model
TARGET_IMAGE_P99_ONE_MS = 20.0  # one image-query client
IMAGE_CLIENTS = 16
ROUNDS = 3  # alternating in-process / gRPC QPS rounds; medians are reported


@contextmanager
def server_process(index_dir: Path, work: Path, device: str, processes: int = 1,
                   extra: Sequence[str] = ()) -> Iterator[str]:
    """`visearch serve` in its own process(es), as deployed; yields host:port."""
    port_file = work / f"port-{index_dir.name}-{processes}"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", str(index_dir),
                             "--port", "0", "--port-file", str(port_file), "--device", device,
                             "--processes", str(processes), *extra],
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


def client_latencies_ms(call: Callable[[Any], object], items: Sequence[Any], clients: int
                        ) -> np.ndarray:
    """Per-call latencies with ``clients`` threads each sending its share back to back
    (closed loop, as ``clients`` users would)."""
    out: list[float] = []
    lock = threading.Lock()

    def client(share: Sequence[Any]) -> None:
        mine = []
        for item in share:
            start = time.perf_counter()
            call(item)
            mine.append((time.perf_counter() - start) * 1000)
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=client, args=(items[i::clients],))
               for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return np.array(out)


def compare(kind: str, index_dir: Path, queries: list[Query], work: Path, device: str,
            threads: int) -> dict[str, Any]:
    """Sequential latency, then QPS in alternating in-process / gRPC rounds (so a busy
    neighbour on a shared machine slows both alike), then ``IMAGE_CLIENTS`` clients."""
    configure_threads()  # the server's thread settings, for the in-process side too
    service = load_service(index_dir, device=device)
    requests = [to_request(q) for q in queries]
    try:
        with server_process(index_dir, work, device) as target, \
                SearchClient(target) as client:
            local = latencies_ms(lambda q: service.search(q), queries)
            responses: list[Any] = []
            remote = latencies_ms(lambda r: responses.append(client.search(r)), requests)
            server_side = np.array([r.timings["total_ms"] for r in responses[-len(requests):]])
            local_qps, remote_qps = [], []
            for _ in range(ROUNDS):
                local_qps.append(concurrent_qps(service.search, queries, threads))
                remote_qps.append(concurrent_qps(client.search, requests, threads))
            many = client_latencies_ms(client.search, requests, IMAGE_CLIENTS)
            empty = latencies_ms(lambda _: client.stub.Info(search_pb2.InfoRequest()),
                                 requests)
    finally:
        service.close()
    return {
        "kind": kind, "queries": len(queries),
        "local_p50": pct(local, 50), "local_p99": pct(local, 99),
        "local_qps": statistics.median(local_qps),
        "grpc_p50": pct(remote, 50), "grpc_p99": pct(remote, 99),
        "grpc_qps": statistics.median(remote_qps),
        "qps_ratio": statistics.median(r / lo for r, lo in zip(remote_qps, local_qps,
                                                                strict=True)),
        "p50_overhead_ms": pct(remote, 50) - pct(local, 50),
        "empty_rpc_p50": pct(empty, 50),
        "server_side_p50": pct(server_side, 50),
        "service_delta_ms": pct(server_side, 50) - pct(local, 50),
        "grpc_p99_over_p50": pct(remote, 99) / pct(remote, 50),
        "many_clients": IMAGE_CLIENTS, "many_p50": pct(many, 50), "many_p99": pct(many, 99),
    }


def to_request(query: Query) -> Any:
    from server.client import image_request, vector_request

    if query.vector is not None:
        return vector_request(query.vector, k=query.params.k)
    return image_request(query.image or b"", k=query.params.k)


def targets(embedding: dict[str, Any], image: dict[str, Any], threads: int,
            procs: dict[str, Any] | None = None) -> list[list[object]]:
    """One row per goal: measured, target, met."""
    by_processes = [] if procs is None else [
        (f"QPS gRPC / in-process, {threads} clients on own connections, --processes {n} "
         f"(embedding)", ratio, f">= {TARGET_QPS_RATIO}", ratio >= TARGET_QPS_RATIO)
        for n, ratio in procs["ratio"].items()]
    goals = [
        ("service time in the server - in-process, p50 (embedding)",
         embedding["service_delta_ms"], f"<= {TARGET_SERVICE_DELTA_MS} ms",
         embedding["service_delta_ms"] <= TARGET_SERVICE_DELTA_MS),
        (f"QPS gRPC / in-process, {threads} clients (embedding)", embedding["qps_ratio"],
         f">= {TARGET_QPS_RATIO}", embedding["qps_ratio"] >= TARGET_QPS_RATIO),
        (f"p99 ms, {IMAGE_CLIENTS} concurrent image clients (tiny model)",
         image["many_p99"], f"<= {TARGET_IMAGE_P99_MANY_MS:g} ms",
         image["many_p99"] <= TARGET_IMAGE_P99_MANY_MS),
        ("p99 ms, one image client (tiny model)", image["grpc_p99"],
         f"<= {TARGET_IMAGE_P99_ONE_MS:g} ms", image["grpc_p99"] <= TARGET_IMAGE_P99_ONE_MS),
        *by_processes,
    ]
    return [[name, value, goal, "met" if ok else "NOT met"] for name, value, goal, ok in goals]


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
    procs = bench_grpc_procs.compare_processes(
        vector_index, vectors, [to_request(q) for q in vectors], work, device, threads,
        PROCESS_COUNTS, CLIENT_PROCESSES)
    requests = [to_request(q) for q in vectors]
    cpu = bench_grpc_cpu.compare_cpu(vector_index, vectors * bench_grpc_cpu.REPEATS,
                                     requests * bench_grpc_cpu.REPEATS, work, device)
    rows = [[r["kind"], r["local_p50"], r["grpc_p50"], r["p50_overhead_ms"], r["empty_rpc_p50"],
             r["server_side_p50"],
             r["local_p99"], r["grpc_p99"], r["grpc_p99_over_p50"], r["local_qps"], r["grpc_qps"],
             r["qps_ratio"], r["many_p99"]]
            for r in results]
    goals = targets(results[0], results[1], threads, procs)
    markdown = "\n\n".join([
        f"{count} sequential queries (k=10, index defaults) for latency, then the same "
        f"{count} from {threads} threads for QPS ({ROUNDS} rounds alternating in-process and "
        f"gRPC; medians), then from {IMAGE_CLIENTS} clients sending back to back. "
        f"*in-process* calls `SearchService.search` "
        f"(the object the servicer wraps: decode, micro-batched embedding, search, paths) in "
        f"the benchmark process with the server's thread settings; *gRPC* sends the same "
        f"queries to `visearch serve` in its own process over 127.0.0.1 (the clients share "
        f"the machine's cores with the server). *empty RPC* is the "
        f"p50 of an `Info` call on the same connection: the gRPC Python round trip on this "
        f"machine before any search work; *server-side* is the service time the server "
        f"reports in each response. The tiny model is untrained (speed only).",
        table(["queries", "p50 ms in-process", "p50 ms gRPC", "p50 overhead ms",
               "empty RPC p50 ms", "server-side p50 ms",
               "p99 ms in-process", "p99 ms gRPC", "gRPC p99/p50", f"QPS in-process "
               f"({threads} threads)", f"QPS gRPC ({threads} clients)", "QPS ratio",
               f"p99 ms gRPC ({IMAGE_CLIENTS} clients)"], rows),
        f"Several server processes (`visearch serve --processes N`, SO_REUSEPORT): the same "
        f"embedding queries from {threads} clients, each on a TCP connection of its own (the "
        f"kernel spreads connections over the processes), in {CLIENT_PROCESSES} client "
        f"processes, {bench_grpc_procs.ROUNDS} rounds "
        f"alternating in-process and each N; medians:",
        table(["server", f"QPS in-process ({threads} threads)",
               f"QPS gRPC ({threads} connections)", "QPS ratio"],
              bench_grpc_procs.rows(procs)),
        f"CPU per call (embedding queries; server CPU from /proc over every thread, client "
        f"CPU of this process's {bench_grpc_cpu.CLIENTS} client threads): unlike wall QPS, "
        f"not blurred by other work on a shared machine. The two *bound* columns are the "
        f"QPS ratio the CPU cost allows (in-process CPU / CPU per served call), with the "
        f"clients on other machines and on these cores. SearchBatch is a different call "
        f"(many queries per RPC): its per-query cost shows what batching amortises, it does "
        f"not replace the unary target. *--cpus* keeps the server on one core.",
        table(bench_grpc_cpu.HEADERS, bench_grpc_cpu.rows(cpu)),
        "Targets:",
        table(["goal", "measured", "target", ""], goals),
    ])
    return Section("gRPC overhead", markdown, {"rows": results, "processes": procs,
                                               "cpu": cpu, "targets": goals})


def prepare(work: Path) -> tuple[Path, Path, list[Path]]:
    """The indexes bench.py would give: 10k CLIP-like 512-d vectors, 250 JPEGs with the
    untrained tiny model. Built once per --work directory."""
    import bench_scale

    vectors = work / "synthetic-10000.idx"
    if not (vectors / "CURRENT").exists():
        bench_scale.build_synthetic(10_000, 512, work)
    images = work / "scale-images-250.idx"
    if not (images / "CURRENT").exists():
        from embedder import EmbedderConfig
        from embedder.embedder import load_embedder

        bench_scale.run_images([250], load_embedder(EmbedderConfig(model="tiny", device="cpu")),
                               work)
    return vectors, images, sorted((work / "jpegs-scale").glob("*.jpg"))[:50]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True,
                        help="scratch directory for the indexes (kept for reruns)")
    parser.add_argument("--queries", type=int, default=300, help="queries per measurement")
    parser.add_argument("--threads", type=int, default=8, help="clients for the QPS rounds")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto for the model")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    vectors, images, files = prepare(args.work)
    section = run(vectors, images, files, args.queries, args.threads, args.work, args.device)
    print(section.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
