"""`visearch export`: an index's embeddings, ids, keys and metadata as Parquet or npy files."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.args import positive_int

EXPORT_HELP = "write an index's embeddings with their ids, keys and metadata to files"
EXPORT_EPILOG = """\
--format parquet: DIR/embeddings-NNNNN.parquet with columns id, key, metadata
(map), embedding (fixed-size list of float32).
--format npy: clip-retrieval's layout, DIR/img_emb/img_emb_N.npy (float16 rows) and
DIR/metadata/metadata_N.parquet (image_path, id, one column per metadata key),
read by clip-retrieval and autofaiss. Both carry DIR/visearch.json (the model),
and `visearch import` reads both back.
"""


def add_export_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help=EXPORT_HELP, description=EXPORT_HELP,
                                   epilog=EXPORT_EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path, metavar="IDX", help="index directory")
    parser.add_argument("--out", required=True, type=Path, help="new or empty directory")
    parser.add_argument("--format", choices=("parquet", "npy"), default="parquet",
                        help="file layout (default: parquet)")
    parser.add_argument("--rows-per-file", type=positive_int, default=1_000_000,
                        help="rows per output file (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=export_command)


def export_command(args: argparse.Namespace) -> int:
    import time

    from tqdm import tqdm

    from index.exchange.export import export_index
    from index.store.directory import IndexDirectory

    directory = IndexDirectory(args.index)
    start = time.perf_counter()
    with tqdm(unit="vec", desc="export", disable=args.quiet or None) as bar:
        report = export_index(directory, args.out, args.format,
                              rows_per_file=args.rows_per_file, progress=bar.update)
    seconds = time.perf_counter() - start
    print(f"exported {report.rows} {report.dim}-d vectors to {report.files} {args.format} "
          f"file(s) in {args.out}; {seconds:.1f} s")
    return 0
