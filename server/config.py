"""Settings of the server and its search service, and the message limits the client shares.

Light on purpose: the client and the command line read these defaults without
loading torch, open_clip or faiss.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from embedder.config import DecodeLimits
from index.ann.gpu_setting import GpuServing
from index.ann.query import MAX_CANDIDATES, MAX_K
from server.feedback.config import FeedbackConfig

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_BATCH_QUERIES = 1024


def message_options(max_bytes: int) -> list[tuple[str, int]]:
    """The same limits on server and client: larger requests get RESOURCE_EXHAUSTED."""
    return [("grpc.max_receive_message_length", max_bytes),
            ("grpc.max_send_message_length", max_bytes)]


# Bytes of memory one decoded pixel costs at the peak of decode + orientation + RGB conversion.
BYTES_PER_DECODED_PIXEL = 8


def default_decode_budget(memory_bytes: int | None = None) -> int:
    """Pixels that may be decoding at once: a tenth of the machine's memory, and at least
    two images at the default --max-pixels so one large image never waits forever."""
    if memory_bytes is None:
        try:
            memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            memory_bytes = 8 * 1024 ** 3
    return max(2 * DecodeLimits().max_pixels, memory_bytes // 10 // BYTES_PER_DECODED_PIXEL)


@dataclass(frozen=True)
class ServiceConfig:
    """What one query may ask for, and how queries share the model."""

    limits: DecodeLimits = DecodeLimits()
    max_k: int = MAX_K
    max_candidates: int = MAX_CANDIDATES
    max_text_bytes: int = 4096
    max_decode_pixels: int = field(default_factory=lambda: default_decode_budget())
    decode_wait_seconds: float = 10.0
    batch_max: int = 32
    batch_wait_ms: float = 2.0
    absolute_paths: bool = False  # hits show paths relative to the build root by default


@dataclass(frozen=True)
class SecurityConfig:
    """Who may connect and what they must present; server/transport.py and server/auth.py
    act on it. Kept apart from ServerConfig so the security settings travel as one value.

    Args:
        tls_cert, tls_key: PEM certificate chain and private key; TLS on when given.
        tls_client_ca: PEM CA bundle; clients must present a certificate it signed (mTLS).
        token_file: bearer tokens, one per line; every call but health needs one.
        write_token_file: tokens for calls that change the index (server.auth.WRITE_METHODS).
        auth_health: health and reflection need a token too.
        insecure: allow a non-loopback address with neither TLS nor tokens.
    """

    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    token_file: Path | None = None
    write_token_file: Path | None = None
    auth_health: bool = False
    insecure: bool = False


@dataclass(frozen=True)
class ServerConfig:
    index_dir: Path
    host: str = "127.0.0.1"
    port: int = 50051
    device: str = "auto"
    checkpoint: str | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    rpc_threads: int = 64
    max_queue: int = 256  # calls waiting for a thread; beyond, RESOURCE_EXHAUSTED at once
    grace_seconds: float = 10.0
    drain_seconds: float = 0.5  # NOT_SERVING is visible this long before the port closes
    port_file: Path | None = None
    service: ServiceConfig = field(default_factory=ServiceConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    thumb_cache_dir: Path | None = None  # None: thumbnails are made anew every time
    thumb_cache_bytes: int = 256 * 1024 * 1024
    # Live index: poll CURRENT this often (0: never); or be the directory's single writer,
    # publishing a version every ``publish_every`` writes or ``publish_seconds`` seconds.
    follow_seconds: float = 2.0
    writable: bool = False
    publish_every: int = 1000
    publish_seconds: float = 30.0
    metrics_port: int | None = None  # Prometheus /metrics on ``host`` (server.metrics); None: off
    feedback: FeedbackConfig | None = None  # click feedback log (server.feedback); None: off
    # Several index directories served as one (server.multi); index_dir is the first.
    shard_dirs: tuple[Path, ...] = ()
    gpus: GpuServing = GpuServing()  # plain searches on GPU copies (index.ann.gpu_serve)
    mmap: bool = False  # read index files memory-mapped (a read-only server only)
    # With metrics: query drift over this many queries (server.drift; 0: off), and live
    # recall of this fraction of queries, at most recall_per_second of them (server.recall).
    drift_window: int = 1000
    drift_threshold: float = 0.2
    recall_sample: float = 0.0
    recall_per_second: float = 5.0
    # One of `--processes N` read-only servers sharing the port (server.processes).
    process_index: int = 0
    processes: int = 1
    # Cores this server's threads stay on (server.affinity, `--cpus`); (): no pinning.
    cpus: tuple[int, ...] = ()
