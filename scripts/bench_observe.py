"""What monitoring costs a served query: the same vector queries against `visearch serve`
processes over one synthetic IVF-PQ index, with monitoring off and on, measured in
alternating rounds so a shared machine's noise falls on every configuration alike.

    PYTHONPATH=.:protos python scripts/bench_observe.py --n 50000 --dim 128 --rounds 3

Configurations (all on 127.0.0.1, the same flags otherwise):
  bare     request ids off (the interceptor replaced by a pass-through; the command has no
           flag for it, so the server runs from a small wrapper), no metrics
  ids      request ids (always on in `visearch serve`), no metrics
  metrics-nodrift  request ids, --metrics-port --drift-window 0 (interceptor, stage histograms)
  metrics  request ids, --metrics-port (as above, plus the default drift window)
  recall   as metrics, plus --recall-sample 0.01
Budget (issue 13): metrics and sampling cost at most 5 % of QPS and 0.1 ms of p50.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "protos")]

from index.build.publish import IndexingOptions  # noqa: E402
from index.build.vector_import import import_vectors  # noqa: E402
from index.store.contract import precomputed_identity  # noqa: E402
from index.store.directory import IndexDirectory  # noqa: E402
from server.client import SearchClient, vector_request  # noqa: E402
from tests.synthetic import clustered, keys  # noqa: E402

CONFIGS = {
    "bare": [],
    "ids": [],
    "metrics-nodrift": ["--metrics-port", "0", "--drift-window", "0"],
    "metrics": ["--metrics-port", "0"],
    "recall": ["--metrics-port", "0", "--recall-sample", "0.01"],
}
# Runs `visearch serve` with the request-id interceptor replaced by a pass-through.
NO_IDS = ("import sys, server.app as app\n"
          "class PassThrough:\n"
          "    def intercept_service(self, continuation, details):\n"
          "        return continuation(details)\n"
          "app.RequestIdInterceptor = PassThrough\n"
          "from cli.main import main\n"
          "sys.exit(main(sys.argv[1:]))\n")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc): a cost a busy neighbour on the
    machine barely changes, unlike wall-clock QPS."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def serving(name: str, index: Path, work: Path) -> Iterator[tuple[str, int]]:
    port_file = work / f"port-{name}"
    command = [sys.executable, "-c", NO_IDS] if name == "bare" else \
        [sys.executable, "-m", "cli.main"]
    proc = subprocess.Popen([*command, "serve", str(index), "--port", "0", "--port-file",
                             str(port_file), "--device", "cpu", *CONFIGS[name]],
                            cwd=ROOT, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'protos'}"})
    try:
        deadline = time.monotonic() + 300
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server {name} did not start")
            time.sleep(0.1)
        yield f"127.0.0.1:{int(port_file.read_text())}", proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def measure(server: tuple[str, int], queries: np.ndarray, threads: int
            ) -> tuple[float, float, float]:
    """(p50 ms of one query at a time, QPS from ``threads`` closed-loop clients, server CPU
    microseconds per query in that concurrent phase)."""
    target, pid = server
    requests = [vector_request(q, k=10) for q in queries]
    with SearchClient(target, timeout=60) as client:
        for request in requests[:20]:
            client.search(request)
        latencies = []
        for request in requests:
            start = time.perf_counter()
            client.search(request)
            latencies.append((time.perf_counter() - start) * 1000)
        start, cpu = time.perf_counter(), cpu_seconds(pid)
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(client.search, requests))
        qps = len(requests) / (time.perf_counter() - start)
        cpu_us = (cpu_seconds(pid) - cpu) / len(requests) * 1e6
    return float(np.median(latencies)), qps, cpu_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = Path(tmp)
        directory = IndexDirectory(work / "idx")
        import_vectors(directory, clustered(args.n, args.dim), keys(args.n),
                       precomputed_identity(args.dim), IndexingOptions(progress=False))
        queries = clustered(args.n + args.queries, args.dim)[args.n:]
        targets = {name: stack.enter_context(serving(name, directory.path, work))
                   for name in CONFIGS}
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in CONFIGS}
        for round_no in range(args.rounds):
            order = list(CONFIGS) if round_no % 2 == 0 else list(reversed(CONFIGS))
            for name in order:
                runs[name].append(measure(targets[name], queries, args.threads))
        spec = directory.manifest().index.spec
    base_p50 = statistics.median(r[0] for r in runs["bare"])
    base_qps = statistics.median(r[1] for r in runs["bare"])
    print(f"{args.n:,} x {args.dim} synthetic vectors, {spec}, k=10, {args.queries} queries; "
          f"median of {args.rounds} alternating rounds; QPS from {args.threads} client threads")
    # Paired: each round's configuration against that round's bare run, then the median,
    # so a slow spell of the shared machine cancels out.
    print("| configuration | p50 ms | p50 - bare (ms) | QPS | QPS / bare | paired p50 - bare "
          "(ms) | paired QPS / bare | server CPU us/query | CPU / bare |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    base_cpu = statistics.median(r[2] for r in runs["bare"])
    for name in CONFIGS:
        p50 = statistics.median(r[0] for r in runs[name])
        qps = statistics.median(r[1] for r in runs[name])
        pairs = list(zip(runs[name], runs["bare"], strict=True))
        paired_p50 = statistics.median(a[0] - b[0] for a, b in pairs)
        paired_qps = statistics.median(a[1] / b[1] for a, b in pairs)
        cpu = statistics.median(r[2] for r in runs[name])
        print(f"| {name} | {p50:.3f} | {p50 - base_p50:+.3f} | {qps:,.0f} | "
              f"{qps / base_qps:.3f} | {paired_p50:+.3f} | {paired_qps:.3f} | {cpu:.0f} | "
              f"{cpu / base_cpu:.3f} |")
    print("per round (p50 ms, QPS, CPU us/query):",
          {k: [(round(a, 3), round(b), round(c)) for a, b, c in v] for k, v in runs.items()})


if __name__ == "__main__":
    main()
