"""Settings of the HTTP side; plain data, importable without FastAPI or uvicorn."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.errors import VisearchError
from server.config import DEFAULT_MAX_MESSAGE_BYTES
from server.credentials import is_loopback

DEFAULT_HTTP_PORT = 8080


class WebExposureError(VisearchError, ValueError):
    """The HTTP side would be open to the network without a token."""


@dataclass(frozen=True)
class WebConfig:
    """Where the page and the JSON API listen and who may use them.

    Args:
        token_file: bearer tokens (one per line); /v1/* needs one, as an
            ``Authorization: Bearer`` header or the ``visearch_token`` cookie the page sets.
        tls_cert, tls_key: serve HTTPS with this certificate chain and key.
        insecure: allow a non-loopback host without a token file.
        max_upload_bytes: largest uploaded query image.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_HTTP_PORT
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False
    max_upload_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    request_timeout: float = 30.0


def check_web_exposure(config: WebConfig) -> None:
    """Refuse, before anything binds, a page open to the network that anyone could use."""
    if (config.tls_cert is None) != (config.tls_key is None):
        raise WebExposureError("--http-tls-cert and --http-tls-key go together")
    if is_loopback(config.host) or config.token_file is not None or config.insecure:
        return
    raise WebExposureError(
        f"refusing to serve HTTP on {config.host} without a token: anyone who can reach the "
        f"port could search the index and see its images. Give --http-token-file (and "
        f"--http-tls-cert/--http-tls-key), or pass --insecure if the network is trusted")
