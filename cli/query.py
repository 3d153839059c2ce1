"""`visearch query`: one query to a running server, printed as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cli.args import add_client_security_arguments, channel_security, positive_int
from common.errors import VisearchError
from index.ann.query import DEFAULT_K

QUERY_HELP = "query a running server by image, text or vector"
# Codes a client should retry after a backoff (see README, "Operating").
RETRY_HINTS = {
    "RESOURCE_EXHAUSTED": " (the server is at capacity: retry after a short backoff)",
    "UNAVAILABLE": " (the server is starting, stopping or unreachable: retry later)",
}


def add_query_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("query", help=QUERY_HELP, description=QUERY_HELP)
    parser.add_argument("image", nargs="?", type=Path, help="query image file")
    parser.add_argument("--text", help="query text instead of an image")
    parser.add_argument("--vector", type=Path,
                        help="query embedding instead: a .npy file or a JSON list of floats")
    parser.add_argument("--server", default="localhost:50051",
                        help="host:port (default: localhost:50051)")
    parser.add_argument("-k", type=positive_int, default=DEFAULT_K,
                        help="results (default: %(default)s)")
    parser.add_argument("--crop", help="LEFT,TOP,RIGHT,BOTTOM pixel box of the query image")
    parser.add_argument("--nprobe", type=positive_int, help="IVF lists to visit")
    parser.add_argument("--refine", type=positive_int,
                        help="re-rank k*REFINE PQ candidates exactly; 1 turns it off")
    parser.add_argument("--like", metavar="ID_OR_KEY",
                        help="more like this indexed image (an id, or a key / shown path)")
    parser.add_argument("--include-self", action="store_true",
                        help="with --like: keep the liked image among the hits")
    group = parser.add_argument_group("re-ranking (README: Filters and re-ranking)")
    group.add_argument("--filter", help='e.g. \'folder = "shoes" and width >= 640\'')
    group.add_argument("--exclude", action="append", default=[], metavar="ID_OR_KEY",
                       help="never return this id or key (repeatable)")
    group.add_argument("--min-score", type=float, help="drop hits below this cosine")
    group.add_argument("--collapse", nargs="?", const=True, type=float, metavar="COSINE",
                       help="collapse near-duplicates (threshold default 0.97)")
    group.add_argument("--offset", type=int, default=0, help="skip this many ranked hits")
    group.add_argument("--page-token", default="", help="next_page_token of a previous query")
    group.add_argument("--fields", default="", help="metadata fields per hit, comma separated")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds (default: 30)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--feedback-click", type=int, metavar="ID",
                        help="then record an impression and a click on hit ID (its rank "
                             "from this answer); the server needs --feedback-log")
    add_client_security_arguments(parser)
    parser.set_defaults(handler=query_command)


def query_command(args: argparse.Namespace) -> int:
    import grpc

    from server.client import (
        SearchClient,
        image_request,
        like_request,
        text_request,
        vector_request,
    )

    given = [x is not None for x in (args.image, args.text, args.vector, args.like)]
    if sum(given) != 1:
        raise QueryUsageError("give exactly one of IMAGE, --text, --vector or --like")
    if args.crop and args.image is None:
        raise QueryUsageError("--crop applies to image queries")
    params = {"k": args.k, "nprobe": args.nprobe, "refine_factor": args.refine,
              **_rerank_options(args)}
    if args.like is not None:
        like = int(args.like) if args.like.lstrip("-").isdigit() else args.like
        request = like_request(like, include_self=args.include_self, **params)
    elif args.image is not None:
        request = image_request(_read(args.image), crop=_parse_crop(args.crop), **params)
    elif args.text is not None:
        request = text_request(args.text, **params)
    else:
        request = vector_request(_load_vector(args.vector), **params)
    with SearchClient(args.server, timeout=args.timeout,
                      security=channel_security(args)) as client:
        try:
            result = client.search(request)
        except grpc.RpcError as exc:
            print(f"visearch query: {exc.code().name}: {exc.details()}"
                  + RETRY_HINTS.get(exc.code().name, ""), file=sys.stderr)
            return 1
        sent = 0
        if args.feedback_click is not None:
            from cli.feedback import click_rank, send

            rank = click_rank([h.id for h in result.hits], args.feedback_click) + args.offset
            # With --json, stdout stays one JSON document.
            sent = send(client, result.query_id, impression=True,
                        click=(args.feedback_click, rank), out=sys.stderr if args.json else None)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return sent
    print(f"{'rank':>4}  {'score':>7}  path")
    for rank, hit in enumerate(result.hits, args.offset + 1):
        extra = f"  (+{len(hit.collapsed_ids)} near-duplicates)" if hit.collapsed_ids else ""
        shown = "  " + " ".join(f"{k}={v}" for k, v in sorted(hit.fields.items())) \
            if hit.fields else ""
        print(f"{rank:>4}  {hit.score:7.4f}  {hit.path}{extra}{shown}")
    if result.next_page_token and (args.offset or args.page_token):  # --json always has it
        print(f"next page: --page-token {result.next_page_token}")
    t = result.timings
    print(f"{len(result.hits)} hits from index version {result.index_version} in "
          f"{t['total_ms']:.1f} ms (decode {t['decode_ms']:.1f}, embed {t['embed_ms']:.1f}, "
          f"search {t['search_ms']:.1f}); query id {result.query_id}")
    return sent


def _rerank_options(args: argparse.Namespace) -> dict[str, object]:
    ids = [int(x) for x in args.exclude if x.lstrip("-").isdigit()]
    return {"filter": args.filter, "exclude_ids": ids,
            "exclude_keys": [x for x in args.exclude if not x.lstrip("-").isdigit()],
            "min_score": args.min_score,
            "collapse": False if args.collapse is None else args.collapse,
            "offset": args.offset, "page_token": args.page_token,
            "fields": [f.strip() for f in args.fields.split(",") if f.strip()]}


class QueryUsageError(VisearchError, ValueError):
    """The query command's arguments do not describe one query."""


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise QueryUsageError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _parse_crop(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        box = tuple(int(v) for v in text.split(","))
    except ValueError as exc:
        raise QueryUsageError(f"--crop wants LEFT,TOP,RIGHT,BOTTOM integers, not {text!r}") \
            from exc
    if len(box) != 4:
        raise QueryUsageError(f"--crop wants 4 numbers, got {len(box)}")
    return box


def _load_vector(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            return np.load(path).astype(np.float32).reshape(-1)
        return np.asarray(json.loads(path.read_text()), dtype=np.float32).reshape(-1)
    except (OSError, ValueError) as exc:
        raise QueryUsageError(f"cannot read a vector from {path}: {exc}") from exc
