"""`visearch drift`: query embeddings against the corpus profile the build recorded.

Prints the population stability index of each statistic (index/drift.py) with
the threshold, and exits 3 when any crosses it, so a cron job or CI step can act.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common.errors import VisearchError

DRIFT_HELP = "compare query embeddings with the corpus the index was built on (PSI)"
EXIT_DRIFTED = 3


class NoReferenceError(VisearchError):
    """The index version was built before drift profiles were recorded."""


class QueryVectorsError(VisearchError, ValueError):
    """The --vectors file is not an (n, dim) array for this index."""


def add_drift_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("drift", help=DRIFT_HELP, description=DRIFT_HELP + (
        f". Exit 0: no statistic over the threshold; {EXIT_DRIFTED}: drifted; 1: error. PSI "
        "under 0.1 is noise, 0.1-0.2 a change worth watching, over 0.2 a shift. Its noise "
        "floor is about bins/queries: use a few hundred queries or more."))
    parser.add_argument("index", type=Path, help="index directory")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--vectors", type=Path, metavar="NPY",
                        help="query embeddings as an (n, dim) .npy array")
    source.add_argument("--queries", type=Path, metavar="DIR",
                        help="a folder of query images, embedded with the index's model")
    parser.add_argument("--threshold", type=float, default=0.2,
                        help="PSI above which a statistic counts as drifted (default: "
                             "%(default)s)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=drift_command)


def drift_command(args: argparse.Namespace) -> int:
    import numpy as np

    from index import drift
    from index.ann.query import SearchParams
    from index.ann.search import Searcher

    searcher = Searcher(args.index)
    reference = drift.Reference.from_json(searcher.manifest.drift)
    if reference is None:
        raise NoReferenceError(f"version {searcher.manifest.version} of {args.index} has no "
                               "drift profile (built before they were recorded): run "
                               f"`visearch build` with --retrain, or import the vectors again")
    if args.vectors is not None:
        try:
            raw = np.load(args.vectors)
        except (OSError, ValueError) as exc:
            raise QueryVectorsError(f"cannot read {args.vectors}: {exc}") from exc
        if raw.ndim != 2 or raw.shape[1] != searcher.dim or len(raw) == 0:
            raise QueryVectorsError(f"{args.vectors} has shape {raw.shape}; expected "
                                    f"(n, {searcher.dim})")
    else:
        from evaluation.queries import embed_folder

        raw = embed_folder(args.queries, searcher.manifest.model, args.index)
    vectors = searcher.prepare(raw)
    top1 = np.concatenate([searcher.search_unit(vectors[i:i + 1024], SearchParams(k=1)).scores
                           for i in range(0, len(vectors), 1024)])[:, 0]
    report = drift.compare(reference, vectors, top1)
    drifted = report.drifted(args.threshold)
    if args.json:
        print(json.dumps({"queries": report.queries, "psi": report.psi,
                          "threshold": args.threshold, "drifted": drifted,
                          "mean_cosine": report.mean_cosine, "top1_median": report.top1_median,
                          "reference_top1_median": report.reference_top1_median}, indent=2))
    else:
        print(f"{report.queries} queries against version {searcher.manifest.version} "
              f"({reference.sample} corpus vectors profiled)")
        for name, value in report.psi.items():
            flag = "DRIFTED" if name in drifted else "ok"
            print(f"  PSI {name:<12} {value:8.3f}  {flag}")
        print(f"  mean query . corpus mean (cosine) {report.mean_cosine:.3f}; median top-1 "
              f"score {report.top1_median:.3f} (corpus {report.reference_top1_median:.3f})")
        print(f"drift: {len(drifted)} of {len(report.psi)} statistics over {args.threshold}"
              + (f" ({', '.join(drifted)})" if drifted else ""))
    return EXIT_DRIFTED if drifted else 0
