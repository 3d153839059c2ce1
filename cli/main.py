"""The `visearch` command: every subcommand, and errors turned into exit codes here.

This package is the top of the dependency graph (common <- embedder <- index <-
evaluation, server <- cli). Subcommand handlers import torch and faiss only when
they run, so `--help` and `visearch query` start fast (a test holds them to it).
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from PIL import Image

from cli.build import add_build_parser, add_sync_parser
from cli.check import add_check_parsers
from cli.compact import add_compact_parser
from cli.delete import add_delete_parser
from cli.drift import add_drift_parser
from cli.eval import add_eval_parser
from cli.export import add_export_parser
from cli.feedback import add_feedback_parser
from cli.finetune import add_finetune_parser
from cli.import_ import add_import_parser
from cli.info import add_info_parser
from cli.query import add_query_parser
from cli.serve import add_health_parser, add_serve_parser
from cli.upsert import add_upsert_parser
from cli.web import add_web_parser
from common.errors import VisearchError
from common.logfmt import formatter

EXIT_ERROR = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visearch", description="Visual search: CLIP embeddings, a FAISS index, gRPC.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_build_parser(subparsers)
    add_sync_parser(subparsers)
    add_delete_parser(subparsers)
    add_upsert_parser(subparsers)
    add_serve_parser(subparsers)
    add_query_parser(subparsers)
    add_feedback_parser(subparsers)
    add_health_parser(subparsers)
    add_info_parser(subparsers)
    add_web_parser(subparsers)
    add_eval_parser(subparsers)
    add_drift_parser(subparsers)
    add_finetune_parser(subparsers)
    add_check_parsers(subparsers)
    add_compact_parser(subparsers)
    add_export_parser(subparsers)
    add_import_parser(subparsers)
    return parser


def configure_logging(verbose: bool, log_format: str = "text") -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
    )
    logging.getLogger().handlers[0].setFormatter(formatter(log_format))
    if not verbose:
        # open_clip logs every config lookup and warns about random init in its own
        # words; our loader says "untrained" once, in ours.
        logging.getLogger().handlers[0].addFilter(
            lambda r: r.name.startswith("visearch") or r.levelno >= logging.ERROR)
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, getattr(args, "log_format", "text"))
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print(f"visearch {args.command}: interrupted", file=sys.stderr)
        return 130
    except VisearchError as exc:
        if args.verbose:
            raise
        print(f"visearch {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
