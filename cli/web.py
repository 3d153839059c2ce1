"""`visearch web`, and the --http-* options `visearch serve` shares with it."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.args import add_client_security_arguments, channel_security, non_negative_int, positive_int
from server.config import DEFAULT_MAX_MESSAGE_BYTES
from server.web.config import DEFAULT_HTTP_PORT, WebConfig

WEB_HELP = "serve the web page and the JSON API in front of a running gRPC server"


def add_web_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("web", help=WEB_HELP, description=WEB_HELP + (
        ". A separate process that talks to the server with the gRPC client: it loads "
        "neither torch nor faiss. SIGTERM or SIGINT stops it."))
    parser.add_argument("--server", default="localhost:50051",
                        help="the gRPC server, host:port (default: localhost:50051)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="HTTP address to bind; a non-loopback one needs "
                             "--http-token-file or --insecure (default: 127.0.0.1)")
    parser.add_argument("--port", type=non_negative_int, default=DEFAULT_HTTP_PORT,
                        help=f"HTTP port (default: {DEFAULT_HTTP_PORT})")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds per call to the server (default: 30)")
    parser.add_argument("--insecure", action="store_true",
                        help="allow a non-loopback --host without --http-token-file")
    add_http_security_arguments(parser)
    add_client_security_arguments(parser)
    parser.set_defaults(handler=web_command)


def add_http_security_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "HTTP security", "The page and /healthz, /readyz stay open; /v1/* needs a token when "
        "--http-token-file is given (header 'Authorization: Bearer TOKEN', or the cookie the "
        "page sets after asking).")
    group.add_argument("--http-token-file", type=Path, metavar="FILE",
                       help="bearer tokens for the JSON API, one per line")
    group.add_argument("--http-tls-cert", type=Path, metavar="PEM",
                       help="serve HTTPS with this certificate chain (with --http-tls-key)")
    group.add_argument("--http-tls-key", type=Path, metavar="PEM", help="the certificate's key")
    group.add_argument("--max-upload-mb", type=positive_int,
                       default=DEFAULT_MAX_MESSAGE_BYTES // (1 << 20),
                       help="largest query image upload in MiB (default: %(default)s)")


def add_serve_http_arguments(parser: argparse.ArgumentParser) -> None:
    """`visearch serve --http-port`: the web side in the same process."""
    group = parser.add_argument_group("web page", "Also serve the web page and JSON API "
                                      "(as `visearch web` would) from this process.")
    group.add_argument("--http-port", type=non_negative_int,
                       help="serve HTTP on this port (0 picks a free one); off when not given")
    group.add_argument("--http-host", default="127.0.0.1",
                       help="HTTP address to bind; a non-loopback one needs --http-token-file "
                            "or --insecure (default: 127.0.0.1)")
    add_http_security_arguments(parser)


def web_config(args: argparse.Namespace, host: str, port: int) -> WebConfig:
    return WebConfig(host=host, port=port, token_file=args.http_token_file,
                     tls_cert=args.http_tls_cert, tls_key=args.http_tls_key,
                     insecure=args.insecure, max_upload_bytes=args.max_upload_mb * (1 << 20),
                     request_timeout=getattr(args, "timeout", 30.0))


def web_command(args: argparse.Namespace) -> int:
    from server.web.config import check_web_exposure
    from server.web.runner import run_web

    config = web_config(args, args.host, args.port)
    check_web_exposure(config)
    return run_web(config, args.server, channel_security(args))
