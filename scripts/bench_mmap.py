"""Resident memory and query latency of an IVF-PQ index read into RAM vs memory-mapped
(IO_FLAG_MMAP), each in a fresh process. "cold" is the first query batch after
opening (pages not yet touched by this process; the OS page cache may be warm).

    python scripts/bench_mmap.py [--n 1000000] [--dim 64]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """
import sys, time, faiss, numpy as np
path, mode = sys.argv[1], sys.argv[2]
rss = lambda: int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20
base = rss()
index = faiss.read_index(path, faiss.IO_FLAG_MMAP if mode == 'mmap' else 0)
opened = rss()
q = np.random.default_rng(1).standard_normal((100, index.d)).astype('float32')
p = faiss.SearchParametersIVF(nprobe=32)
t = time.perf_counter(); index.search(q[:50], 10, params=p); cold = time.perf_counter() - t
t = time.perf_counter(); index.search(q[50:], 10, params=p); warm = time.perf_counter() - t
print(f'{mode}: +{opened - base:.0f} MiB on open, +{rss() - base:.0f} MiB after queries; '
      f'cold {cold * 20:.2f} ms/query, warm {warm * 20:.2f} ms/query')
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()
    import faiss
    import numpy as np

    x = np.random.default_rng(0).standard_normal((args.n, args.dim)).astype("float32")
    index = faiss.index_factory(args.dim, "IVF1024,PQ16", faiss.METRIC_INNER_PRODUCT)
    index.train(x[:50_000])
    index.add(x)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.faiss"
        faiss.write_index(index, str(path))
        print(f"{args.n:,} x {args.dim} IVF1024,PQ16: file {path.stat().st_size / 2**20:.0f} MiB")
        for mode in ("ram", "mmap"):
            out = subprocess.run([sys.executable, "-c", PROBE, str(path), mode],
                                 capture_output=True, text=True, check=True)
            print(out.stdout.strip())


if __name__ == "__main__":
    main()
