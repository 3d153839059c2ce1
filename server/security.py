"""How a client reaches a server: TLS (with its own certificate for mutual TLS) and a token.

One value, ``ChannelSecurity``, shared by SearchClient and every command that
connects (query, health, eval --server). The bearer token is added by a client
interceptor rather than call credentials, because gRPC only attaches call
credentials to TLS channels and a plaintext loopback channel must carry it too.
Light on purpose: no torch, open_clip or faiss.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import grpc

from server.credentials import CredentialsError, check_token, is_loopback, read_pem, target_host

log = logging.getLogger("visearch.client")


@dataclass(frozen=True)
class ChannelSecurity:
    """TLS and token settings of a client channel; the default is plaintext, no token.

    Args:
        tls_ca: PEM CA bundle that signed the server's certificate; turns TLS on.
        tls_cert, tls_key: the client's certificate and key, for servers requiring mTLS.
        tls: TLS with the system's trusted CAs when no ``tls_ca`` is given.
        server_name: the name to expect in the server's certificate instead of the
            target's host (e.g. when connecting by IP address).
        token: bearer token sent as ``authorization: Bearer <token>`` on every call.
    """

    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls: bool = False
    server_name: str | None = None
    token: str | None = field(default=None, repr=False)  # never in logs or tracebacks

    @property
    def uses_tls(self) -> bool:
        return self.tls or any(p is not None for p in (self.tls_ca, self.tls_cert, self.tls_key))

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise CredentialsError("--tls-cert and --tls-key go together: give both or neither")
        return grpc.ssl_channel_credentials(
            root_certificates=read_pem(self.tls_ca, "CA bundle (--tls-ca)")
            if self.tls_ca is not None else None,
            private_key=read_pem(self.tls_key, "client key (--tls-key)")
            if self.tls_key is not None else None,
            certificate_chain=read_pem(self.tls_cert, "client certificate (--tls-cert)")
            if self.tls_cert is not None else None)

    def open_channel(self, target: str, options: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
        """A channel to ``target`` with these settings; the token goes on every call."""
        options = list(options)
        if self.uses_tls:
            if self.server_name:
                options.append(("grpc.ssl_target_name_override", self.server_name))
            channel = grpc.secure_channel(target, self.credentials(), options=options)
        else:
            channel = grpc.insecure_channel(target, options=options)
        if self.token is None:
            return channel
        check_token(self.token, "the bearer token")
        if not self.uses_tls and not is_loopback(target_host(target)):
            log.warning("sending a bearer token to %s without TLS: anyone on the path can read "
                        "it; use --tls-ca (or --tls)", target)
        return grpc.intercept_channel(channel, BearerToken(self.token))


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Sequence[tuple[str, str]] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: Any


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                  grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds ``authorization: Bearer <token>`` to every call of a channel, of every shape."""

    def __init__(self, token: str):
        self._entry = ("authorization", f"Bearer {token}")

    def _with_token(self, details: Any) -> grpc.ClientCallDetails:
        metadata = [m for m in (details.metadata or ()) if m[0] != "authorization"]
        return _ClientCallDetails(details.method, details.timeout, [*metadata, self._entry],
                                  details.credentials, details.wait_for_ready,
                                  getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation: Callable[..., Any], client_call_details: Any,
                              request: Any) -> Any:
        return continuation(self._with_token(client_call_details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], client_call_details: Any,
                               request: Any) -> Any:
        return continuation(self._with_token(client_call_details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], client_call_details: Any,
                               request_iterator: Any) -> Any:
        return continuation(self._with_token(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation: Callable[..., Any], client_call_details: Any,
                                request_iterator: Any) -> Any:
        return continuation(self._with_token(client_call_details), request_iterator)


class _ClientCallDetails(_CallDetails, grpc.ClientCallDetails):
    """grpc wants an instance of its ClientCallDetails; a named tuple gives the fields."""
