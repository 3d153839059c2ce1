"""Argument types and option groups shared by the subcommands (model, decoding, connection
security, numbers)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from embedder.config import (
    DEFAULT_MAX_FILE_MB,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    MIB,
    DecodeLimits,
    EmbedderConfig,
    ModelIdentity,
    default_workers,
)

if TYPE_CHECKING:
    from server.security import ChannelSecurity

TOKEN_ENV = "VISEARCH_TOKEN"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model/--pretrained``, local weights, device and precision."""
    group = parser.add_argument_group("model")
    # None, not the default model: "not given" lets an existing index name its own model.
    group.add_argument("--model", default=None,
                       help="open_clip architecture, hf-hub:ORG/REPO, local-dir:PATH, or "
                            "'tiny' (untrained, for tests) (default: the model of the index "
                            f"being extended, else {DEFAULT_MODEL})")
    group.add_argument("--pretrained", default=None,
                       help="open_clip weight tag or file (default: the index's, else "
                            f"{DEFAULT_PRETRAINED})")
    group.add_argument("--checkpoint", default=None,
                       help="local weights file (.safetensors/.bin/.pt); works offline")
    group.add_argument("--device", default="auto",
                       help="auto (CUDA when available), cpu, cuda or cuda:N (default: auto)")
    group.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                       help="auto: fp16 autocast on CUDA, fp32 on the CPU")


def add_decode_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("decoding")
    group.add_argument("--batch-size", type=positive_int, default=64,
                       help="images per model batch (default: %(default)s)")
    group.add_argument("--workers", type=non_negative_int, default=default_workers(),
                       help="decode worker processes (default: one per core, %(default)s)")
    group.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                       help="reject images with more pixels, before decoding (default: "
                            "%(default)s)")
    group.add_argument("--min-side", type=positive_int, default=1,
                       help="reject images whose shorter side is smaller (default: 1)")
    group.add_argument("--max-file-mb", type=positive_int, default=DEFAULT_MAX_FILE_MB,
                       help="reject files over this many MiB before reading them (default: "
                            "%(default)s)")


def embedder_config(args: argparse.Namespace, stored: ModelIdentity | None = None,
                    base_dir: Path | None = None) -> EmbedderConfig:
    """The model named by --model; without one, ``stored`` (the model of an index being
    extended) if given, else the default. --pretrained, --checkpoint, --device and
    --precision from the command line apply either way; ``base_dir`` is the index holding
    ``stored`` (fine-tuned weights lie inside it)."""
    if args.model is None and stored is not None:
        return stored.embedder_config(device=args.device, precision=args.precision,
                                      checkpoint=args.checkpoint, pretrained=args.pretrained,
                                      base_dir=base_dir)
    return EmbedderConfig(
        model=DEFAULT_MODEL if args.model is None else args.model,
        pretrained=DEFAULT_PRETRAINED if args.pretrained is None else args.pretrained,
        checkpoint=args.checkpoint,
        device=args.device,
        precision=args.precision,
    )


def decode_limits(args: argparse.Namespace) -> DecodeLimits:
    return DecodeLimits(max_pixels=args.max_pixels, min_side=args.min_side,
                        max_file_bytes=args.max_file_mb * MIB)


def add_client_security_arguments(parser: argparse.ArgumentParser) -> None:
    """TLS and token options of every command that connects to a server."""
    group = parser.add_argument_group(
        "connection security", f"TLS turns on with --tls-ca, --tls or a client certificate. "
        f"The bearer token comes from --token-file, else the {TOKEN_ENV} environment variable.")
    group.add_argument("--tls-ca", type=Path, metavar="PEM",
                       help="CA bundle that signed the server's certificate")
    group.add_argument("--tls", action="store_true",
                       help="TLS with the system's trusted CAs (no --tls-ca needed)")
    group.add_argument("--tls-cert", type=Path, metavar="PEM",
                       help="client certificate, for servers that require mutual TLS")
    group.add_argument("--tls-key", type=Path, metavar="PEM", help="the client certificate's key")
    group.add_argument("--tls-server-name", metavar="NAME",
                       help="name to expect in the server's certificate (default: the host "
                            "of --server)")
    group.add_argument("--token-file", type=Path, metavar="FILE",
                       help=f"send the first token in FILE as the bearer token (default: "
                            f"${TOKEN_ENV})")


def channel_security(args: argparse.Namespace) -> ChannelSecurity:
    """The options of add_client_security_arguments as one value; --token-file wins over
    the environment variable."""
    from server.credentials import read_client_token
    from server.security import ChannelSecurity

    if args.token_file is not None:
        token: str | None = read_client_token(args.token_file)
    else:
        token = os.environ.get(TOKEN_ENV, "").strip() or None
    return ChannelSecurity(tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
                           tls=args.tls, server_name=args.tls_server_name, token=token)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value


def int_list(text: str) -> list[int]:
    """``1,4,16`` -> [1, 4, 16]: sorted, unique, each >= 1."""
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from exc
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"values must be >= 1: {text!r}")
    return values
