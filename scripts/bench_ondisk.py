"""Resident memory of a published index served three ways, each opened by a Searcher in a
fresh process: read into RAM, `serve --mmap`, and `build --ondisk` (merged on-disk lists).

    python scripts/bench_ondisk.py [--n 200000] [--dim 64] [--spec IVF256,PQ16]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import sys, time, numpy as np
sys.path[:0] = [sys.argv[3], sys.argv[3] + '/protos']
rss = lambda: int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20
from index.ann import faiss_index as ann
from index.ann.query import SearchParams
from index.ann.search import Searcher
ann.set_serve_mmap(sys.argv[2] == 'mmap')
base = rss()
s = Searcher(sys.argv[1])
opened = rss()
q = np.random.default_rng(1).standard_normal((200, s.dim)).astype('float32')
p = SearchParams(k=10, nprobe=16)
t = time.perf_counter(); s.search(q[:100], p); cold = time.perf_counter() - t
t = time.perf_counter(); s.search(q[100:], p); warm = time.perf_counter() - t
print(f'{sys.argv[2]:6}: +{opened - base:.0f} MiB on open, +{rss() - base:.0f} MiB after 200 '
      f'queries; {cold * 10:.2f} / {warm * 10:.2f} ms/query (first / next 100)')
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--spec", default="IVF256,PQ16")
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT), str(ROOT / "protos")]
    from index.ann.params import IndexOverrides
    from index.build.publish import IndexingOptions
    from index.build.vector_import import import_vectors
    from index.store.contract import precomputed_identity
    from index.store.directory import IndexDirectory
    from tests.synthetic import clustered, keys

    x = clustered(args.n, args.dim, clusters=500)
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        for name, ondisk in (("ram", False), ("ondisk", True)):
            directory = IndexDirectory(Path(tmp) / name)
            import_vectors(directory, x, keys(args.n), precomputed_identity(args.dim),
                           IndexingOptions(progress=False, overrides=IndexOverrides(spec=args.spec),
                                           index_shards=2, ondisk=ondisk))
            dirs[name] = directory
        size = dirs["ram"].index_path(dirs["ram"].manifest()).stat().st_size
        print(f"{args.n:,} x {args.dim} {args.spec}: index file {size / 2**20:.1f} MiB")
        for label, name in (("ram", "ram"), ("mmap", "ram"), ("ondisk", "ondisk")):
            out = subprocess.run([sys.executable, "-c", PROBE, str(dirs[name].path), label,
                                  str(ROOT)], capture_output=True, text=True, check=True)
            print(out.stdout.strip())


if __name__ == "__main__":
    main()
