"""How the server listens: TLS or plaintext, and whether it may listen there at all.

A port reachable from other machines with neither TLS nor tokens lets anyone
who can reach it search the index and read its file paths, so the server refuses
to bind one unless the operator says ``--insecure``. Every check here runs before
the port opens, and ``preflight`` runs them before torch loads.
"""

from __future__ import annotations

import errno
import logging
import socket

import grpc

from common.errors import VisearchError
from server.auth import auth_policy
from server.config import SecurityConfig
from server.credentials import CredentialsError, is_loopback, read_pem

log = logging.getLogger("visearch.server")


class ExposureError(VisearchError, ValueError):
    """Security settings that do not fit together, or a port that would be open to anyone."""


def check_settings(security: SecurityConfig) -> None:
    """Options that need each other, named as the command line spells them."""
    if (security.tls_cert is None) != (security.tls_key is None):
        raise ExposureError("--tls-cert and --tls-key go together: give both or neither")
    if security.tls_client_ca is not None and security.tls_cert is None:
        raise ExposureError("--tls-client-ca (mutual TLS) needs TLS: add --tls-cert and "
                            "--tls-key")
    if security.auth_health and security.token_file is None:
        raise ExposureError("--auth-health needs --token-file: health checks would need a "
                            "token that no file defines")


def check_exposure(host: str, security: SecurityConfig) -> None:
    """Refuse a non-loopback address with neither TLS nor a token file, unless insecure."""
    if is_loopback(host) or security.insecure:
        return
    if security.tls_cert is None and security.token_file is None:
        raise ExposureError(
            f"refusing to listen on {host} without TLS or a token: anyone who can reach the "
            "port could search the index and read its file paths. Give --token-file (and "
            "--tls-cert/--tls-key so tokens are not sent in the clear), or pass --insecure "
            "if the network in front of the server is trusted")


def check_listen(host: str, security: SecurityConfig) -> None:
    check_settings(security)
    check_exposure(host, security)


def server_credentials(security: SecurityConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from the PEM files, requiring client certificates when a client CA is
    given; None for plaintext."""
    if security.tls_cert is None or security.tls_key is None:
        return None
    key = read_pem(security.tls_key, "TLS private key (--tls-key)")
    chain = read_pem(security.tls_cert, "TLS certificate (--tls-cert)")
    client_ca = read_pem(security.tls_client_ca, "client CA (--tls-client-ca)") \
        if security.tls_client_ca is not None else None
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


def preflight(host: str, security: SecurityConfig) -> None:
    """Every check the server makes before it binds, without loading torch or faiss."""
    check_listen(host, security)
    server_credentials(security)
    auth_policy(security)


def describe(security: SecurityConfig) -> str:
    """What protects the port, for the start-up log line."""
    parts = ["mutual TLS" if security.tls_client_ca else "TLS" if security.tls_cert
             else "plaintext"]
    if security.token_file:
        parts.append("tokens required" + ("" if security.auth_health else " (health open)"))
    if security.write_token_file:
        parts.append("write tokens required for writes")
    if not security.token_file and not security.write_token_file:
        parts.append("no tokens")
    return ", ".join(parts)


class PortInUseError(VisearchError):
    """Another process listens on the asked-for port."""


def port_in_use(host: str, port: int) -> bool:
    """Whether binding ``host:port`` fails with EADDRINUSE right now (no SO_REUSEPORT)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def bind(server: grpc.Server, host: str, port: int, security: SecurityConfig,
         shared: bool = False) -> int:
    """Add the listening port (secure when TLS is configured); returns the bound port.
    ``shared``: one of several processes of one server on this port (SO_REUSEPORT); the
    parent checked that the port was free before starting them."""
    check_listen(host, security)
    address = f"{host}:{port}"
    credentials = server_credentials(security)
    if port and not shared and port_in_use(host, port):
        raise PortInUseError(f"port {port} is in use on {host} (another visearch serve?); "
                             f"stop it or choose another --port (0 picks a free one)")
    if credentials is None:
        bound = server.add_insecure_port(address)
    else:
        try:
            bound = server.add_secure_port(address, credentials)
        except RuntimeError as exc:  # gRPC says only "Failed to bind" and logs the reason
            raise CredentialsError(
                f"cannot listen on {address} with TLS: either the port is taken or "
                f"{security.tls_key} is not the private key of {security.tls_cert} (gRPC's "
                "log line above says which)") from exc
    if not bound:
        raise OSError(f"cannot listen on {address}")
    _warn_about_exposure(host, security)
    return bound


def _warn_about_exposure(host: str, security: SecurityConfig) -> None:
    if is_loopback(host):
        return
    if security.tls_cert is None and security.token_file is None:
        log.warning("listening on %s with neither TLS nor tokens (--insecure): anyone who can "
                    "reach the port can search the index", host)
    elif security.tls_cert is None:
        log.warning("listening on %s without TLS: bearer tokens and results cross the network "
                    "in the clear; add --tls-cert/--tls-key", host)
