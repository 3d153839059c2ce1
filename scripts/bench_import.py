"""Catalog rows per second: the per-row build path (add_shard) vs the import's bulk path
(add_keys), and a whole `import_folder` of synthetic vectors with its peak RSS.

    python scripts/bench_import.py [--rows 500000] [--dim 512]
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index.store.catalog import Catalog, ImageRecord, Shard  # noqa: E402


def rows_per_second(method: str, n: int, chunk: int, folder: Path) -> float:
    catalog = Catalog(folder / f"{method}.sqlite")
    # The build stores each file's content hash; an import stores none (add_keys).
    records: list = [f"/k/{i:09d}" for i in range(n)] if method == "add_keys" else [
        ImageRecord(f"/k/{i:09d}", 0, 0, hashlib.sha256(str(i).encode()).hexdigest())
        for i in range(n)]
    start = time.perf_counter()
    for first in range(0, n, chunk):
        part = records[first:first + chunk]
        getattr(catalog, method)(Shard(first // chunk, f"s{first}", first, len(part)), part, 1)
    seconds = time.perf_counter() - start
    catalog.close()
    return n / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--import-rows", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        per_row = rows_per_second("add_shard", min(args.rows, 100_000), 8192, folder)
        bulk = rows_per_second("add_keys", args.rows, 65536, folder)
        print(f"catalog: add_shard {per_row:,.0f} rows/s, add_keys {bulk:,.0f} rows/s")
        from index.build.publish import IndexingOptions
        from index.exchange.importer import import_folder
        from index.store.directory import IndexDirectory

        src = folder / "src" / "img_emb"
        src.mkdir(parents=True)
        out = np.lib.format.open_memmap(src / "img_emb_0.npy", mode="w+", dtype=np.float16,
                                        shape=(args.import_rows, args.dim))
        rng = np.random.default_rng(0)
        for s in range(0, args.import_rows, 65536):
            block = rng.standard_normal((min(65536, args.import_rows - s), args.dim))
            out[s:s + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
        out.flush()
        del out
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        report = import_folder(IndexDirectory(folder / "idx"), folder / "src",
                               options=IndexingOptions(progress=False,
                                                       overrides=_flat_override()))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"import_folder: {report.rows:,} x {args.dim} stored at "
              f"{report.rows_per_second:,.0f} rows/s (vectors + catalog); peak RSS "
              f"{peak:,.0f} MiB (before {before:,.0f} MiB; the vectors are "
              f"{args.import_rows * args.dim * 2 / 2**20:,.0f} MiB as float16)")


def _flat_override():  # type: ignore[no-untyped-def]
    from index.ann.params import IndexOverrides

    return IndexOverrides(spec="Flat")  # the storing path is measured, not IVF training


if __name__ == "__main__":
    main()
