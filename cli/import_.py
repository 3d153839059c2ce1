"""`visearch import`: publish an index over embeddings computed elsewhere (our export or
clip-retrieval's output)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.args import add_model_arguments, embedder_config, positive_int
from index.store.vectors import VECTOR_DTYPES

IMPORT_HELP = "store embeddings from Parquet or clip-retrieval npy files and publish an index"
IMPORT_EPILOG = """\
DIR holds embeddings-*.parquet (from `visearch export --format parquet`) or
clip-retrieval's img_emb/img_emb_N.npy + metadata/metadata_N.parquet. Keys come
from the key, image_path, path or url column; other columns become metadata.
The model is --model (loaded once to record its identity), else the one
DIR/visearch.json names, else "precomputed" (the index then answers vector
queries only). Reads in bounded memory: one shard of --shard-size rows at a time.
"""


def add_import_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("import", help=IMPORT_HELP, description=IMPORT_HELP,
                                   epilog=IMPORT_EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path, metavar="IDX", help="index directory (new or same "
                        "model)")
    parser.add_argument("--from", dest="source", required=True, type=Path, metavar="DIR",
                        help="folder of exported embeddings")
    add_model_arguments(parser)
    parser.add_argument("--vector-dtype", choices=VECTOR_DTYPES, default="float16",
                        help="dtype of the stored raw vectors (default: float16)")
    parser.add_argument("--shard-size", type=positive_int, default=65536,
                        help="rows per stored shard and transaction (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=import_command)


def import_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from index.build.publish import IndexingOptions
    from index.exchange.importer import import_folder
    from index.store.directory import IndexDirectory

    identity = None
    if args.model:
        from embedder.embedder import load_embedder

        identity = load_embedder(embedder_config(args)).identity
    options = IndexingOptions(vector_dtype=args.vector_dtype, progress=not args.quiet)
    with tqdm(unit="vec", desc="import", disable=args.quiet or None) as bar:
        report = import_folder(IndexDirectory(args.index), args.source, identity=identity,
                               options=options, shard_rows=args.shard_size,
                               progress=bar.update)
    m = report.indexing.manifest
    print(f"imported {report.rows} vectors ({report.rows_per_second:,.0f} rows/s stored) as "
          f"model {report.identity.name}; {m.live_count} vectors in {m.index.spec}, version "
          f"{m.version}" + (" [UNTRAINED model]" if m.model.untrained else ""))
    return 0
