"""`visearch compact`: drop the stored vectors of deleted images; ids stay as they are."""

from __future__ import annotations

import argparse
from pathlib import Path

COMPACT_HELP = "rewrite the vector shards without the vectors of deleted images (ids unchanged)"


def add_compact_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compact", help=COMPACT_HELP, description=COMPACT_HELP + (
        ". Deleted images keep their catalog rows (ids are never reused); only their raw "
        "vectors go. Takes the build lock, so it fails at once while a build or a "
        "--writable server holds the directory."))
    parser.add_argument("index", type=Path, help="index directory")
    parser.add_argument("--retrain", action="store_true",
                        help="also train a new index on the live vectors and publish it")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=compact_command)


def compact_command(args: argparse.Namespace) -> int:
    from index.build.compact import compact
    from index.store.directory import IndexDirectory

    report = compact(IndexDirectory(args.index), retrain=args.retrain, progress=not args.quiet)
    print(report.summary())
    return 0
