"""`visearch check` and `visearch repair`: is an index directory whole, and mend it if not."""

from __future__ import annotations

import argparse
from pathlib import Path

CHECK_HELP = ("verify that an index directory's parts agree (CURRENT, manifest, index, "
              "shards, catalog)")
REPAIR_HELP = "repair an index directory from its stored vectors where they allow it"


def add_check_parsers(subparsers: argparse._SubParsersAction) -> None:
    check = subparsers.add_parser("check", help=CHECK_HELP, description=CHECK_HELP + (
        ". Exits 0 when everything agrees, 1 otherwise; each problem says whether "
        "`visearch repair` can mend it."))
    check.add_argument("index", type=Path, help="index directory")
    check.set_defaults(handler=check_command)
    repair = subparsers.add_parser("repair", help=REPAIR_HELP, description=REPAIR_HELP + (
        ": points CURRENT at the newest intact version, rebuilds an unreadable index file "
        "from the stored vectors, removes files of killed writers, then checks again."))
    repair.add_argument("index", type=Path, help="index directory")
    repair.add_argument("--quiet", action="store_true", help="no progress bars")
    repair.set_defaults(handler=repair_command)


def check_command(args: argparse.Namespace) -> int:
    from index.check import check_directory
    from index.store.directory import IndexDirectory

    findings = check_directory(IndexDirectory(args.index))
    for finding in findings:
        print(finding.line())
    return _summary(args.index, findings)


def repair_command(args: argparse.Namespace) -> int:
    from index.repair import repair_directory
    from index.store.directory import IndexDirectory

    done, findings = repair_directory(IndexDirectory(args.index), progress=not args.quiet)
    for action in done:
        print(f"repaired: {action}")
    for finding in findings:
        print(finding.line())
    return _summary(args.index, findings)


def _summary(path: Path, findings: list) -> int:  # type: ignore[type-arg]
    bad = [f for f in findings if not f.ok]
    fixable = [f for f in bad if f.repair]
    if not bad:
        print(f"{path}: every part agrees")
        return 0
    print(f"{path}: {len(bad)} problem(s), {len(fixable)} mendable by `visearch repair {path}`")
    return 1
