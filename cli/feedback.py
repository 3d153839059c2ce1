"""`visearch feedback` and `visearch query --feedback-click`: tell a server what a person
did with an answer, by the ``query_id`` every SearchResponse carries (README, Monitoring).
The server needs --feedback-log."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from cli.args import add_client_security_arguments, channel_security, positive_int
from common.errors import VisearchError

FEEDBACK_HELP = "record an impression, a click or dwell time for a served query"


class FeedbackUsageError(VisearchError, ValueError):
    """Feedback arguments that describe no event, or a click on a hit not returned."""


def add_feedback_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("feedback", help=FEEDBACK_HELP, description=FEEDBACK_HELP + (
        ". QUERY_ID is the query_id of a search answer (visearch query prints it)."))
    parser.add_argument("query_id", help="query_id of the answer")
    parser.add_argument("--impression", action="store_true", help="its hits were shown")
    parser.add_argument("--click", type=int, metavar="ID", help="the hit id that was opened")
    parser.add_argument("--rank", type=positive_int, help="--click: the hit's rank (1 = first)")
    parser.add_argument("--dwell-ms", type=positive_int,
                        help="--click: how long the person stayed on it")
    parser.add_argument("--server", default="localhost:50051", help="host:port")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds (default: 30)")
    add_client_security_arguments(parser)
    parser.set_defaults(handler=feedback_command)


def feedback_command(args: argparse.Namespace) -> int:
    from server.client import SearchClient

    if args.click is None and (args.rank is not None or args.dwell_ms is not None):
        raise FeedbackUsageError("--rank and --dwell-ms describe a --click")
    if args.click is not None and args.rank is None:
        raise FeedbackUsageError("--click needs the hit's --rank")
    if not args.impression and args.click is None:
        raise FeedbackUsageError("give --impression, --click ID --rank N, or both")
    click = None if args.click is None else (args.click, args.rank)
    with SearchClient(args.server, timeout=args.timeout,
                      security=channel_security(args)) as client:
        return send(client, args.query_id, impression=args.impression, click=click,
                    dwell_ms=args.dwell_ms)


def send(client: object, query_id: str, *, impression: bool,
         click: tuple[int, int] | None, dwell_ms: int | None = None,
         out: TextIO | None = None) -> int:
    """One Feedback call; prints what was recorded (to ``out``, default stdout), or the
    server's refusal (exit 1)."""
    import grpc

    try:
        recorded = client.feedback(query_id, impression=impression,  # type: ignore[attr-defined]
                                   click=click, dwell_ms=dwell_ms)
    except grpc.RpcError as exc:
        print(f"visearch feedback: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    print(f"feedback: {recorded} event(s) recorded for query {query_id}", file=out or sys.stdout)
    return 0


def click_rank(hit_ids: list[int], clicked: int) -> int:
    """The 1-based rank of ``clicked`` among the hits just returned."""
    if clicked not in hit_ids:
        raise FeedbackUsageError(f"--feedback-click {clicked}: not among the hits returned "
                                 f"({', '.join(map(str, hit_ids)) or 'none'})")
    return hit_ids.index(clicked) + 1
