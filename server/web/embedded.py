"""`visearch serve --http-port`: the HTTP side in the same process, as a gRPC client of
its own server over loopback, so it behaves exactly like a separate `visearch web`."""

from __future__ import annotations

from server.config import ServerConfig
from server.credentials import is_loopback, read_client_token
from server.security import ChannelSecurity
from server.web.config import WebConfig, WebExposureError
from server.web.runner import EmbeddedWeb

WILDCARDS = {"0.0.0.0", "::", "[::]", ""}


def loopback_target(server: ServerConfig, port: int) -> tuple[str, ChannelSecurity]:
    """Where and how the web side reaches the gRPC server of this process."""
    if server.security.tls_cert is not None:
        raise WebExposureError("--http-port with a TLS gRPC server is not supported yet: run "
                               "`visearch web --server HOST:PORT --tls-ca ...` beside it")
    host = server.host
    if host in WILDCARDS or is_loopback(host):
        host = "127.0.0.1" if ":" not in host.strip("[]") else "[::1]"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    token = read_client_token(server.security.token_file) if server.security.token_file \
        else None
    return f"{host}:{port}", ChannelSecurity(token=token)


def start_embedded_web(web: WebConfig, server: ServerConfig, grpc_port: int) -> EmbeddedWeb:
    target, security = loopback_target(server, grpc_port)
    embedded = EmbeddedWeb(web, target, security)
    embedded.start()
    return embedded
