"""`visearch info`: what a running server serves, and how its search defaults were tuned.

The build's summary line says this once; `info` says it for the version a server has
actually loaded (after a reload or a follow).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cli.args import add_client_security_arguments, channel_security


def add_info_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info", help="a server's model, index, tuned search defaults and bytes per vector",
        description="Ask a server's Info RPC: model, index version and spec, the search "
                    "defaults with the recall the build's tuning measured for them, and what "
                    "one vector costs (ANN code and re-rank store).")
    parser.add_argument("--server", default="localhost:50051", help="host:port")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default: 5)")
    parser.add_argument("--json", action="store_true", help="every field as JSON")
    add_client_security_arguments(parser)
    parser.set_defaults(handler=info_command)


def info_command(args: argparse.Namespace) -> int:
    import grpc

    from server.client import SearchClient

    with SearchClient(args.server, timeout=args.timeout,
                      security=channel_security(args)) as client:
        try:
            info = client.info()
        except grpc.RpcError as exc:
            print(f"{args.server}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    print(json.dumps(info, indent=2) if args.json else "\n".join(describe(info)))
    return 0


def describe(info: dict[str, Any]) -> list[str]:
    """Info as a few human lines (the fields proto3 leaves unset count as absent)."""
    untrained = " (untrained)" if info.get("untrained") else ""
    lines = [f"model: {info.get('model', '')}{untrained}, {info.get('dim', 0)} dimensions",
             f"index: version {info.get('index_version', 0)}, {info.get('index_spec', '')}, "
             f"{int(info.get('vector_count', 0)):,} vectors"]
    if info.get("exact"):
        lines.append("search: exact (flat), no tuning needed")
        return lines
    settings = f"nprobe {info.get('default_nprobe', 0)}, refine {info.get('refine_factor', 0)}"
    if info.get("tuned_recall") is None:
        lines.append(f"search defaults: {settings} (not tuned)")
    else:
        k = info.get("tuned_k", 10)
        met = "met" if info["tuned_recall"] >= info.get("target_recall", 0) else "NOT met"
        lines.append(f"search defaults: {settings}, tuned{tuned_at(info)}: {k}-recall@{k} "
                     f"{info['tuned_recall']:.3f} on {info.get('tune_queries', 0)} sampled "
                     f"queries (target {info.get('target_recall', 0):.2f} {met})")
    store = info.get("rerank_store") or "mmap"
    lines.append(f"bytes per vector: {info.get('code_bytes', 0)} code + "
                 f"{info.get('rerank_bytes', 0)} re-rank store ({store}) + 8 id")
    return lines


def tuned_at(info: dict[str, Any]) -> str:
    """' at 2,000 vectors (now 2,006)': the count the recall was measured at, when known."""
    tuned = int(info.get("tuned_vector_count", 0))
    if not tuned:
        return ""
    now = int(info.get("vector_count", 0))
    return f" at {tuned:,} vectors" + ("" if now == tuned else f" (now {now:,})")
