"""`visearch delete`: retire images from an index directory, or from a writable server."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cli.args import add_client_security_arguments, channel_security
from common.errors import VisearchError

DELETE_HELP = "remove images from an index (a new version without them; ids are never reused)"
DELETE_EPILOG = """\
visearch delete IDX PATH... | @list.txt | --id N...      the index directory itself
visearch delete --server HOST:PORT PATH... | --id N...   a server started with --writable

A PATH that is a directory removes everything indexed under it. Unknown paths and ids
are reported; the exit status is non-zero only when nothing matched.
"""


class DeleteUsageError(VisearchError, ValueError):
    """The command line names no index, or nothing to delete."""


def add_delete_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("delete", help=DELETE_HELP, description=DELETE_HELP,
                                   epilog=DELETE_EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", metavar="IDX|PATH",
                        help="the index directory (without --server), then paths or @list.txt")
    parser.add_argument("--id", dest="ids", type=int, action="append", default=[],
                        metavar="N", help="a vector id to delete (repeatable)")
    parser.add_argument("--key", dest="keys", action="append", default=[], metavar="KEY",
                        help="with --server: a key as upserted, taken verbatim (repeatable)")
    parser.add_argument("--server", help="HOST:PORT of a server started with --writable")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (default: 60)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_client_security_arguments(parser)
    parser.set_defaults(handler=delete_command)


def expand_lists(items: list[str]) -> list[str]:
    """``@FILE`` -> its lines (blank lines and ``#`` comments skipped)."""
    out: list[str] = []
    for item in items:
        if not item.startswith("@"):
            out.append(item)
            continue
        try:
            lines = Path(item[1:]).read_bytes().splitlines()
        except OSError as exc:
            raise DeleteUsageError(f"cannot read list file {item[1:]}: {exc.strerror}") from exc
        out.extend(os.fsdecode(line.strip()) for line in lines
                   if line.strip() and not line.strip().startswith(b"#"))
    return out


def delete_command(args: argparse.Namespace) -> int:
    if args.server:
        return _delete_remote(args)
    if not args.targets:
        raise DeleteUsageError("give the index directory: visearch delete IDX PATH...")
    from index.build.publish import IndexingOptions
    from index.build.retire import delete_images
    from index.store.directory import IndexDirectory

    paths = expand_lists(args.targets[1:])
    if not paths and not args.ids:
        raise DeleteUsageError("give paths, @list.txt or --id N to delete")
    report = delete_images(IndexDirectory(args.targets[0]), paths, args.ids,
                           IndexingOptions(progress=not args.quiet))
    for name in report.unknown:
        print(f"unknown: {name}", file=sys.stderr)
    m = report.indexing.manifest
    print(f"deleted {len(report.removed)} images, {len(report.unknown)} unknown; "
          f"{m.live_count} vectors in version {m.version}")
    return 0


def _delete_remote(args: argparse.Namespace) -> int:
    from server.client import SearchClient

    keys = [os.path.abspath(p) for p in expand_lists(args.targets)] + list(args.keys)
    if not keys and not args.ids:
        raise DeleteUsageError("give paths, --key or --id to delete")
    with SearchClient(args.server, timeout=args.timeout,
                      security=channel_security(args)) as client:
        outcome = client.delete(keys=keys, ids=args.ids)
    for name in outcome.unknown_keys:
        print(f"unknown: {name}", file=sys.stderr)
    for row_id in outcome.unknown_ids:
        print(f"unknown: id {row_id}", file=sys.stderr)
    print(f"deleted {outcome.removed} images, "
          f"{len(outcome.unknown_keys) + len(outcome.unknown_ids)} unknown")
    return 0 if outcome.removed else 1
