"""`visearch serve` and `visearch health`: argument parsing; the server is in server.app."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cli.args import (
    add_client_security_arguments,
    channel_security,
    non_negative_int,
    positive_int,
)
from cli.web import add_serve_http_arguments, web_config
from common.errors import VisearchError
from embedder.config import DecodeLimits
from index.ann.gpu_setting import GpuServing, GpuSettingError, parse_gpus
from server.config import DEFAULT_MAX_MESSAGE_BYTES, SecurityConfig, ServerConfig, ServiceConfig
from server.feedback.config import FeedbackConfig

SERVE_HELP = "serve nearest-neighbour queries over an index directory with gRPC"
SERVER_DEFAULTS = ServerConfig(index_dir=Path("."))
SERVICE_DEFAULTS = ServiceConfig()


def add_serve_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help=SERVE_HELP, description=SERVE_HELP + (
        ". Health is NOT_SERVING until the index and model are loaded; SIGTERM or SIGINT "
        "turns it NOT_SERVING, lets in-flight calls finish, and exits 0. SIGHUP re-reads "
        "the token files and looks at CURRENT at once."))
    parser.add_argument("index", type=Path, nargs="+",
                        help="index directory made by `visearch build`; several (or a folder "
                             "of them) are served as one index: each query searches every "
                             "shard and the top k are merged, hit ids = shard << 40 | id")
    parser.add_argument("--host", default=SERVER_DEFAULTS.host,
                        help="address to bind; 0.0.0.0 or [::] for all, which needs TLS, "
                             "--token-file or --insecure (default: 127.0.0.1)")
    parser.add_argument("--port", type=non_negative_int, default=SERVER_DEFAULTS.port,
                        help="port; 0 picks a free one (default: 50051)")
    parser.add_argument("--port-file", type=Path,
                        help="write the bound port here once serving (useful with --port 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--gpus", type=gpus_setting, default=GpuServing(), metavar="MODE",
                        help="search the index on faiss GPUs: replicate (a copy per GPU, "
                             "more QPS), shard (split over the GPUs, larger indexes), N "
                             "(replicate on N GPUs), MODE:N, or off (default); without a "
                             "faiss GPU it falls back to the CPU and logs so")
    parser.add_argument("--mmap", action="store_true",
                        help="memory-map the index files instead of reading them into RAM: "
                             "only the inverted lists queries touch become resident (an "
                             "on-disk index from `visearch build --ondisk` is always mapped)")
    parser.add_argument("--checkpoint",
                        help="local weights file; must match the weights the index was built with")
    parser.add_argument("--processes", type=positive_int, default=1, metavar="N",
                        help="serve read-only from N processes on one port, each with its own "
                             "GIL (SO_REUSEPORT: the kernel spreads client connections, a "
                             "connection stays with one process). Each loads the index and "
                             "the model into its own RAM, so memory is per process unless "
                             "--mmap lets them share the index's pages; each follows CURRENT "
                             "itself. A child that dies stops the server with exit 1. Not "
                             "with --writable (one writer) or --http-port; --metrics-port P: "
                             "process i serves its own metrics at P+i (default: 1)")
    parser.add_argument("--cpus", type=cpus_setting, default=(), metavar="LIST",
                        help="keep the server's threads on these cores (e.g. 1, 0-3, 0,2): "
                             "a search then runs on a warm core instead of wherever gRPC's "
                             "threads last ran (on 2 shared cores ~0.05 ms less server time "
                             "per embedding query, unless other work holds that core). "
                             "With --processes N each process gets every N-th core of the "
                             "list. The model's forward pass is limited "
                             "to these cores too (default: no pinning)")
    add_limit_arguments(parser)
    parser.add_argument("--batch-max", type=positive_int, default=SERVICE_DEFAULTS.batch_max,
                        help="most queries embedded in one micro-batch (default: %(default)s)")
    parser.add_argument("--batch-wait-ms", type=float, default=SERVICE_DEFAULTS.batch_wait_ms,
                        help="how long a micro-batch waits for more queries (default: "
                             "%(default)s)")
    parser.add_argument("--thumb-cache", type=Path, default=default_thumb_cache(),
                        help="folder for cached thumbnails (default: %(default)s)")
    parser.add_argument("--thumb-cache-mb", type=positive_int, default=256,
                        help="most MiB the thumbnail cache holds (default: %(default)s)")
    parser.add_argument("--grace", type=float, default=SERVER_DEFAULTS.grace_seconds,
                        help="seconds in-flight calls get at shutdown (default: %(default)s)")
    parser.add_argument("--absolute-paths", action="store_true",
                        help="hits carry the server's absolute file paths instead of paths "
                             "relative to the build root")
    add_live_arguments(parser)
    add_observe_arguments(parser)
    add_server_security_arguments(parser)
    add_serve_http_arguments(parser)
    parser.set_defaults(handler=serve_command)


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "limits", "What one call may ask for and how much work runs at once; a call over a "
        "limit gets INVALID_ARGUMENT, a server at capacity RESOURCE_EXHAUSTED (retry later).")
    group.add_argument("--max-message-mb", type=positive_int,
                       default=DEFAULT_MAX_MESSAGE_BYTES // (1024 * 1024),
                       help="largest request or response in MiB (default: %(default)s)")
    group.add_argument("--max-pixels", type=positive_int,
                       default=SERVICE_DEFAULTS.limits.max_pixels,
                       help="reject query images with more pixels (default: %(default)s)")
    group.add_argument("--max-k", type=positive_int, default=SERVICE_DEFAULTS.max_k,
                       help="largest k a query may ask for (default: %(default)s)")
    group.add_argument("--max-candidates", type=positive_int,
                       default=SERVICE_DEFAULTS.max_candidates,
                       help="largest k * refine_factor one query may re-rank "
                            "(default: %(default)s)")
    group.add_argument("--max-text-bytes", type=positive_int,
                       default=SERVICE_DEFAULTS.max_text_bytes,
                       help="longest text query in UTF-8 bytes (default: %(default)s)")
    group.add_argument("--max-decode-megapixels", type=positive_int,
                       default=SERVICE_DEFAULTS.max_decode_pixels // 1_000_000,
                       help="image pixels decoding at once; more waits, then "
                            "RESOURCE_EXHAUSTED (default: a tenth of memory, %(default)s)")
    group.add_argument("--max-queue", type=non_negative_int, default=SERVER_DEFAULTS.max_queue,
                       help="calls waiting for one of the server's threads; beyond, "
                            "RESOURCE_EXHAUSTED at once (default: %(default)s)")


def default_thumb_cache() -> Path:
    """$XDG_CACHE_HOME/visearch/thumbs: files are named by content hash, so one folder
    serves every index on the machine."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "visearch" / "thumbs"


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "live index", "A read-only server follows CURRENT and swaps in each new version "
        "(same model only). A --writable server is the directory's single writer.")
    group.add_argument("--follow-seconds", type=float, default=SERVER_DEFAULTS.follow_seconds,
                       help="poll CURRENT this often; 0: only on SIGHUP (default: %(default)s)")
    group.add_argument("--writable", action="store_true",
                       help="accept Upsert and Delete; holds the build lock while serving")
    group.add_argument("--publish-every", type=positive_int,
                       default=SERVER_DEFAULTS.publish_every,
                       help="--writable: publish a version after this many written items "
                            "(default: %(default)s)")
    group.add_argument("--publish-seconds", type=float,
                       default=SERVER_DEFAULTS.publish_seconds,
                       help="--writable: publish pending writes at least this often "
                            "(default: %(default)s)")


def add_observe_arguments(parser: argparse.ArgumentParser) -> None:
    from common.logfmt import LOG_FORMATS

    group = parser.add_argument_group("monitoring", "Prometheus metrics and log format.")
    group.add_argument("--metrics-port", type=non_negative_int,
                       help="serve Prometheus metrics at http://HOST:PORT/metrics, on --host "
                            "(default: off)")
    group.add_argument("--feedback-log", type=Path, nargs="?", const="",
                       metavar="DIR",
                       help="accept Feedback calls (impressions, clicks, dwell) and append "
                            "them and each query's kind, index version and returned ids to "
                            "JSON Lines files in DIR (default DIR: INDEX/feedback); off "
                            "unless given")
    group.add_argument("--log-query-text", action="store_true",
                       help="--feedback-log: also store text queries' text (never images)")
    group.add_argument("--drift-window", type=non_negative_int,
                       default=SERVER_DEFAULTS.drift_window,
                       help="with --metrics-port: PSI of the last N query embeddings against "
                            "the build's corpus profile; 0: off (default: %(default)s)")
    group.add_argument("--drift-threshold", type=float,
                       default=SERVER_DEFAULTS.drift_threshold,
                       help="log a warning when a drift PSI exceeds this (default: "
                            "%(default)s)")
    group.add_argument("--recall-sample", type=fraction, default=0.0, metavar="FRACTION",
                       help="with --metrics-port: search this share of plain queries again "
                            "exactly in a background thread and export live recall@k "
                            "(e.g. 0.01; default: off)")
    group.add_argument("--recall-max-per-second", type=float,
                       default=SERVER_DEFAULTS.recall_per_second,
                       help="--recall-sample: at most this many sampled queries per second "
                            "(default: %(default)s)")
    group.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                       help="json: one object per line with request id, method, code and "
                            "duration (default: %(default)s)")


def add_server_security_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "security", "A non-loopback --host needs TLS or --token-file, or --insecure. Token "
        "files: one token per line, '#' comments; SIGHUP re-reads them.")
    group.add_argument("--tls-cert", type=Path, metavar="PEM",
                       help="server certificate chain; turns TLS on (with --tls-key)")
    group.add_argument("--tls-key", type=Path, metavar="PEM", help="the certificate's key")
    group.add_argument("--tls-client-ca", type=Path, metavar="PEM",
                       help="mutual TLS: clients need a certificate signed by this CA")
    group.add_argument("--token-file", type=Path, metavar="FILE",
                       help="bearer tokens; every call but health and reflection needs one")
    group.add_argument("--write-token-file", type=Path, metavar="FILE",
                       help="tokens for calls that change the index (they then need one of "
                            "these; write tokens can also read)")
    group.add_argument("--auth-health", action="store_true",
                       help="health checks and reflection need a token too")
    group.add_argument("--insecure", action="store_true",
                       help="allow a non-loopback --host with neither TLS nor tokens")


def security_config(args: argparse.Namespace) -> SecurityConfig:
    return SecurityConfig(tls_cert=args.tls_cert, tls_key=args.tls_key,
                          tls_client_ca=args.tls_client_ca, token_file=args.token_file,
                          write_token_file=args.write_token_file,
                          auth_health=args.auth_health, insecure=args.insecure)


def serve_command(args: argparse.Namespace) -> int:
    from index.store.directory import IndexDirectory
    from server.transport import preflight

    shards = shard_paths(args.index)
    args.index = shards[0]
    for path in shards:
        IndexDirectory(path).manifest()  # a wrong path fails before torch loads
    if args.recall_sample > 0 and args.metrics_port is None:
        raise ObserveUsageError("--recall-sample exports its recall in /metrics: give "
                                "--metrics-port too")
    if args.recall_sample > 0 and len(shards) > 1:
        raise ObserveUsageError("--recall-sample measures one index against its stored "
                                "vectors; serve one index directory to use it")
    security = security_config(args)
    preflight(args.host, security)  # so do refused exposure and unreadable certificates
    http = None
    if args.http_port is not None:
        from server.web.config import check_web_exposure

        http = web_config(args, args.http_host, args.http_port)
        check_web_exposure(http)

    config = ServerConfig(
        index_dir=args.index, host=args.host, port=args.port, device=args.device,
        checkpoint=args.checkpoint, max_message_bytes=args.max_message_mb * 1024 * 1024,
        grace_seconds=args.grace, port_file=args.port_file, security=security,
        max_queue=args.max_queue,
        follow_seconds=args.follow_seconds, writable=args.writable,
        publish_every=args.publish_every, publish_seconds=args.publish_seconds,
        service=ServiceConfig(limits=DecodeLimits(max_pixels=args.max_pixels),
                              max_k=args.max_k, max_candidates=args.max_candidates,
                              max_text_bytes=args.max_text_bytes,
                              max_decode_pixels=args.max_decode_megapixels * 1_000_000,
                              batch_max=args.batch_max, batch_wait_ms=args.batch_wait_ms,
                              absolute_paths=args.absolute_paths),
        thumb_cache_dir=args.thumb_cache, thumb_cache_bytes=args.thumb_cache_mb * (1 << 20),
        metrics_port=args.metrics_port, feedback=feedback_config(args),
        shard_dirs=tuple(shards) if len(shards) > 1 else (), gpus=args.gpus,
        mmap=args.mmap,
        drift_window=args.drift_window, drift_threshold=args.drift_threshold,
        recall_sample=args.recall_sample, recall_per_second=args.recall_max_per_second,
        cpus=args.cpus,
    )
    if args.cpus:
        from server.affinity import check_cpus

        check_cpus(args.cpus, args.processes)
    if args.processes > 1:
        from server.processes import check_processes, serve_processes

        check_processes(config, args.processes, http is not None)
        return serve_processes(config, args.processes, args.verbose, args.log_format)
    from server.app import serve

    return serve(config, http)


class NotAnIndexError(VisearchError):
    """A path given to serve is neither an index directory nor a folder of them."""


def shard_paths(paths: Sequence[Path]) -> list[Path]:
    """The index directories to serve: each path itself, or, for a folder that is no index
    but holds index directories (the shards of a build split by folder), those in name
    order."""
    out: list[Path] = []
    for path in paths:
        if (path / "CURRENT").exists() or not path.is_dir():
            out.append(path)
            continue
        inner = sorted(p for p in path.iterdir() if (p / "CURRENT").is_file())
        if not inner:
            raise NotAnIndexError(f"{path} is not an index directory and holds none; give "
                                  f"directories made by `visearch build`")
        out.extend(inner)
    return out


def cpus_setting(text: str) -> tuple[int, ...]:
    from server.affinity import CpuSetError, parse_cpus

    try:
        return parse_cpus(text)
    except CpuSetError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def gpus_setting(text: str) -> GpuServing:
    try:
        return parse_gpus(text)
    except GpuSettingError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


class ObserveUsageError(VisearchError, ValueError):
    """A monitoring flag that does nothing without another one."""


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1")
    return value


def feedback_config(args: argparse.Namespace) -> FeedbackConfig | None:
    if args.feedback_log is None:
        return None
    folder = args.feedback_log or args.index / "feedback"  # "": given without DIR
    return FeedbackConfig(folder=folder, log_query_text=args.log_query_text)


def add_health_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "health", help="exit 0 when a server reports SERVING (for container health checks)",
        description="Ask a server's standard grpc.health.v1 service; exit 0 when SERVING.")
    parser.add_argument("--server", default="localhost:50051", help="host:port")
    parser.add_argument("--service", default="", help="service name ('' for the server)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default: 5)")
    add_client_security_arguments(parser)
    parser.set_defaults(handler=health_command)


def health_command(args: argparse.Namespace) -> int:
    import grpc

    from server.client import SearchClient

    with SearchClient(args.server, timeout=args.timeout,
                      security=channel_security(args)) as client:
        try:
            status = client.health(args.service)
        except grpc.RpcError as exc:
            print(f"{args.server}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(f"{args.server}: {status}")
    return 0 if status == "SERVING" else 1
