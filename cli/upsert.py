"""`visearch upsert --server HOST:PORT PATH...`: add or replace images on a writable server."""

from __future__ import annotations

import argparse
import os
import sys

from cli.args import add_client_security_arguments, channel_security
from cli.delete import DeleteUsageError, expand_lists

UPSERT_HELP = "add or replace images on a server started with --writable (key: absolute path)"
BATCH = 64


def add_upsert_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("upsert", help=UPSERT_HELP, description=UPSERT_HELP + (
        ". Each acknowledged batch is durable and searchable at once; the server publishes "
        "versions on its own schedule."))
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or @list.txt")
    parser.add_argument("--server", required=True, help="HOST:PORT of a --writable server")
    parser.add_argument("--partial", action="store_true",
                        help="write the good images of a batch even if some are bad")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per batch")
    add_client_security_arguments(parser)
    parser.set_defaults(handler=upsert_command)


def upsert_command(args: argparse.Namespace) -> int:
    from server.client import SearchClient

    paths = expand_lists(args.paths)
    if not paths:
        raise DeleteUsageError("no images given")
    written = failed = 0
    unreadable = [p for p in paths if not (os.path.isfile(p) and os.access(p, os.R_OK))]
    for path in unreadable:  # each its own failure, as in a build; the rest go on
        print(f"failed: {path}: not a readable file", file=sys.stderr)
    failed += len(unreadable)
    skipped = set(unreadable)
    paths = [p for p in paths if p not in skipped]
    with SearchClient(args.server, timeout=args.timeout,
                      security=channel_security(args)) as client:
        for start in range(0, len(paths), BATCH):
            for item in client.upsert_images(paths[start:start + BATCH],
                                             allow_partial=args.partial):
                if item.error is None:
                    written += 1
                else:
                    failed += 1
                    print(f"failed: {item.key}: {item.error.message}", file=sys.stderr)
    print(f"upserted {written} images, failed {failed}")
    return 0 if written or not failed else 1
