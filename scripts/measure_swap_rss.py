"""Resident memory of a server-side index handle across hot swaps.

Builds a Flat index of N synthetic vectors, loads it (one version's footprint),
then publishes and swaps in a new version ``--swaps`` times the way a running
server does (server.follow.VersionFollower.poll), and prints RSS before, after one
version, and after the swaps, as JSON. The issue's bar: after 20 swaps RSS stays
within 10% of one version's footprint above the first load.

    python scripts/measure_swap_rss.py --n 200000 --dim 128 --swaps 20
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        import os

        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--swaps", type=int, default=20)
    args = parser.parse_args(argv)

    from index.ann.search import Searcher
    from index.build.publish import IndexingOptions
    from index.build.vector_import import import_vectors
    from index.store.contract import precomputed_identity
    from index.store.directory import IndexDirectory
    from server.follow import VersionFollower
    from server.runtime import IndexHandle
    from tests.synthetic import clustered, keys

    with tempfile.TemporaryDirectory() as tmp:
        directory = IndexDirectory(Path(tmp) / "idx")
        identity = precomputed_identity(args.dim)
        import_vectors(directory, clustered(args.n, args.dim), keys(args.n), identity,
                       IndexingOptions(progress=False, overrides=_flat()))
        gc.collect()
        before = rss_bytes()
        handle = IndexHandle(Searcher(directory))
        one = rss_bytes()
        follower = VersionFollower(directory, handle, identity, interval=3600)
        for i in range(args.swaps):
            directory.republish(directory.manifest(), refine_factor=1 + i % 2)
            assert follower.poll()
            gc.collect()
            follower.release_freed()  # what the follower's next tick does
        after = rss_bytes()
        footprint = one - before
        growth = after - one
        print(json.dumps({"n": args.n, "dim": args.dim, "swaps": args.swaps,
                          "rss_before_mb": round(before / 2**20, 1),
                          "one_version_mb": round(footprint / 2**20, 1),
                          "rss_after_swaps_mb": round(after / 2**20, 1),
                          "growth_mb": round(growth / 2**20, 1),
                          "growth_fraction": round(growth / footprint, 3)}))
    return 0


def _flat():  # type: ignore[no-untyped-def]
    from index.ann.params import IndexOverrides

    return IndexOverrides(spec="Flat")


if __name__ == "__main__":
    sys.exit(main())
