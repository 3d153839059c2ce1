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
    parser.add_argument("--metadata", metavar="FILE", help=(
        "fields of the images: CSV with a path column (a header name:type declares a type) "
        "or JSON Lines with a path key, as for `visearch build --metadata`; stored with "
        "the same types, so filters such as 'price < 100' work on upserted images"))
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
    fields = sidecar_by_key(args.metadata, paths) if args.metadata else {}
    with SearchClient(args.server, timeout=args.timeout,
                      security=channel_security(args)) as client:
        for start in range(0, len(paths), BATCH):
            for item in client.upsert_images(paths[start:start + BATCH], metadata=fields,
                                             allow_partial=args.partial):
                if item.error is None:
                    written += 1
                else:
                    failed += 1
                    print(f"failed: {item.key}: {item.error.message}", file=sys.stderr)
    print(f"upserted {written} images, failed {failed}")
    return 0 if written or not failed else 1


def sidecar_by_key(sidecar: str, paths: list[str]) -> dict[str, dict[str, str]]:
    """The sidecar's fields by upsert key (absolute path), as Upsert metadata text with
    each field's type declared (``price:float``); rows naming no given image are said."""
    from pathlib import Path

    from index.store.metadata import encode, read_sidecar

    rows = read_sidecar(Path(sidecar))
    keys = {os.path.abspath(p): str(Path(p).resolve()) for p in paths}
    keys.update({str(Path(p).resolve()): str(Path(p).resolve()) for p in paths})
    out: dict[str, dict[str, str]] = {}
    unknown = 0
    for path, values in rows.rows:
        key = keys.get(path) or keys.get(str(Path(path).resolve()))
        if key is None:
            unknown += 1
            continue
        out[key] = {f"{name}:{rows.types[name]}": encode(value, rows.types[name])
                    for name, value in values.items()}
    if unknown:
        print(f"metadata: {unknown} rows name no image given to upsert", file=sys.stderr)
    return out
