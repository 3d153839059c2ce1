"""`visearch serve` and `visearch query`: argument parsing and output."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import grpc
import numpy as np

from embedder.cli_args import non_negative_int, positive_int
from embedder.config import DEFAULT_MAX_PIXELS, DecodeLimits
from embedder.errors import VisearchError
from server.client import DEFAULT_MAX_MESSAGE_BYTES

SERVE_HELP = "serve nearest-neighbour queries over an index directory with gRPC"
QUERY_HELP = "query a running server by image, text or vector"


def add_serve_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help=SERVE_HELP, description=SERVE_HELP + (
        ". Health is NOT_SERVING until the index and model are loaded; SIGTERM or SIGINT "
        "turns it NOT_SERVING, lets in-flight calls finish, and exits 0."))
    parser.add_argument("index", type=Path, help="index directory made by `visearch build`")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind; 0.0.0.0 or [::] for all (default: 127.0.0.1)")
    parser.add_argument("--port", type=non_negative_int, default=50051,
                        help="port; 0 picks a free one (default: 50051)")
    parser.add_argument("--port-file", type=Path,
                        help="write the bound port here once serving (useful with --port 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--checkpoint",
                        help="local weights file; must match the weights the index was built with")
    parser.add_argument("--max-message-mb", type=positive_int,
                        default=DEFAULT_MAX_MESSAGE_BYTES // (1024 * 1024),
                        help="largest request or response in MiB (default: %(default)s)")
    parser.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                        help="reject query images with more pixels (default: %(default)s)")
    parser.add_argument("--max-k", type=positive_int, default=1000,
                        help="largest k a query may ask for (default: 1000)")
    parser.add_argument("--batch-max", type=positive_int, default=32,
                        help="most queries embedded in one micro-batch (default: 32)")
    parser.add_argument("--batch-wait-ms", type=float, default=2.0,
                        help="how long a micro-batch waits for more queries (default: 2)")
    parser.add_argument("--grace", type=float, default=10.0,
                        help="seconds in-flight calls get at shutdown (default: 10)")
    parser.set_defaults(handler=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    from index.directory import IndexDirectory

    IndexDirectory(args.index).manifest()  # a wrong path fails before torch loads

    from server.app import ServerConfig, serve
    from server.service import ServiceConfig

    return serve(ServerConfig(
        index_dir=args.index, host=args.host, port=args.port, device=args.device,
        checkpoint=args.checkpoint, max_message_bytes=args.max_message_mb * 1024 * 1024,
        grace_seconds=args.grace, port_file=args.port_file,
        service=ServiceConfig(limits=DecodeLimits(max_pixels=args.max_pixels),
                              max_k=args.max_k, batch_max=args.batch_max,
                              batch_wait_ms=args.batch_wait_ms),
    ))


def add_health_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "health", help="exit 0 when a server reports SERVING (for container health checks)",
        description="Ask a server's standard grpc.health.v1 service; exit 0 when SERVING.")
    parser.add_argument("--server", default="localhost:50051", help="host:port")
    parser.add_argument("--service", default="", help="service name ('' for the server)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default: 5)")
    parser.set_defaults(handler=health_command)


def health_command(args: argparse.Namespace) -> int:
    from server.client import SearchClient

    with SearchClient(args.server, timeout=args.timeout) as client:
        try:
            status = client.health(args.service)
        except grpc.RpcError as exc:
            print(f"{args.server}: {exc.code().name}", file=sys.stderr)
            return 1
    print(f"{args.server}: {status}")
    return 0 if status == "SERVING" else 1


def add_query_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("query", help=QUERY_HELP, description=QUERY_HELP)
    parser.add_argument("image", nargs="?", type=Path, help="query image file")
    parser.add_argument("--text", help="query text instead of an image")
    parser.add_argument("--vector", type=Path,
                        help="query embedding instead: a .npy file or a JSON list of floats")
    parser.add_argument("--server", default="localhost:50051",
                        help="host:port (default: localhost:50051)")
    parser.add_argument("-k", type=positive_int, default=10, help="results (default: 10)")
    parser.add_argument("--crop", help="LEFT,TOP,RIGHT,BOTTOM pixel box of the query image")
    parser.add_argument("--nprobe", type=positive_int, help="IVF lists to visit")
    parser.add_argument("--refine", type=positive_int,
                        help="re-rank k*REFINE PQ candidates exactly; 1 turns it off")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds (default: 30)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=query_command)


def query_command(args: argparse.Namespace) -> int:
    from server.client import SearchClient, image_request, text_request, vector_request

    given = [x is not None for x in (args.image, args.text, args.vector)]
    if sum(given) != 1:
        raise QueryUsageError("give exactly one of IMAGE, --text or --vector")
    if args.crop and args.image is None:
        raise QueryUsageError("--crop applies to image queries")
    params = {"k": args.k, "nprobe": args.nprobe, "refine_factor": args.refine}
    if args.image is not None:
        request = image_request(_read(args.image), crop=_parse_crop(args.crop), **params)
    elif args.text is not None:
        request = text_request(args.text, **params)
    else:
        request = vector_request(_load_vector(args.vector), **params)
    with SearchClient(args.server, timeout=args.timeout) as client:
        try:
            result = client.search(request)
        except grpc.RpcError as exc:
            print(f"visearch query: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    print(f"{'rank':>4}  {'score':>7}  path")
    for rank, hit in enumerate(result.hits, 1):
        print(f"{rank:>4}  {hit.score:7.4f}  {hit.path}")
    t = result.timings
    print(f"{len(result.hits)} hits from index version {result.index_version} in "
          f"{t['total_ms']:.1f} ms (decode {t['decode_ms']:.1f}, embed {t['embed_ms']:.1f}, "
          f"search {t['search_ms']:.1f})")
    return 0


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
