"""Bearer-token authentication, checked in front of every service by the server's one
interceptor (server.callpath).

Clients send ``authorization: Bearer <token>`` metadata. Tokens come from files
(server.credentials has the format) and are kept only as SHA-256 digests; a
candidate is compared with every one of them with ``hmac.compare_digest``, so
neither the time taken nor an early exit tells a caller how close a guess came
or which token matched. SIGHUP re-reads the files (server.app); a file that
fails to read leaves the tokens loaded before in place.

Health and reflection stay open by default so load balancers and container
health checks work without a secret; ``auth_health`` closes them too. Calls that
change the index (WRITE_METHODS) can require tokens from a separate write file.
The check runs before the request is parsed, so a refused caller costs no decoding.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from server.config import SecurityConfig
from server.credentials import CredentialsError, read_token_file

log = logging.getLogger("visearch.server")

# Full method names of the calls that change the index.
WRITE_METHODS: frozenset[str] = frozenset({"/visearch.v1.VisualSearch/Upsert",
                                           "/visearch.v1.VisualSearch/Delete"})

# Services that answer without a token unless auth_health is set.
OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

MISSING_TOKEN = "missing bearer token: send the metadata 'authorization: Bearer <token>'"
INVALID_TOKEN = "invalid token"
NEEDS_WRITE_TOKEN = "this call changes the index and needs a write token"

Refusal = tuple[grpc.StatusCode, str]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenStore:
    """The tokens of one file; ``reload`` swaps in the file's current tokens all at once."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._digests = self._load()

    def _load(self) -> tuple[bytes, ...]:
        return tuple(_digest(token) for token in read_token_file(self.path))

    def reload(self) -> int:
        """Re-read the file; on error the old tokens stay and the error propagates."""
        self._digests = self._load()  # one reference swap: calls see old or new, never a mix
        return len(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def accepts(self, token: str) -> bool:
        """Whether ``token`` is one of the file's, comparing with every token every time."""
        candidate = _digest(token)
        found = False
        for digest in self._digests:
            found |= hmac.compare_digest(digest, candidate)
        return found


def bearer_token(metadata: Iterable[Any]) -> str | None:
    """The token of the first ``authorization`` entry, if it is a Bearer credential."""
    for key, value in metadata:
        if key == "authorization":
            scheme, _, token = str(value).strip().partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


@dataclass(frozen=True)
class AuthPolicy:
    """Which calls need which tokens. ``read`` None: reads are open; ``write`` None: writes
    need a read token (or nothing, when ``read`` is None too). Write tokens also read."""

    read: TokenStore | None = None
    write: TokenStore | None = None
    auth_health: bool = False
    write_methods: frozenset[str] = WRITE_METHODS

    def check(self, method: str, metadata: Iterable[Any]) -> Refusal | None:
        """None when the call may go on, else the status code and reason to refuse it."""
        if not self.auth_health and method.startswith(OPEN_PREFIXES):
            return None
        allowed: Sequence[TokenStore]
        if method in self.write_methods and self.write is not None:
            is_write, allowed = True, [self.write]
        elif self.read is None:
            return None
        else:
            is_write, allowed = False, self.stores()
        token = bearer_token(metadata)
        if token is None:
            return grpc.StatusCode.UNAUTHENTICATED, MISSING_TOKEN
        if any([store.accepts(token) for store in allowed]):  # a list: no short circuit
            return None
        if is_write and self.read is not None and self.read.accepts(token):
            return grpc.StatusCode.PERMISSION_DENIED, NEEDS_WRITE_TOKEN
        return grpc.StatusCode.UNAUTHENTICATED, INVALID_TOKEN

    def stores(self) -> list[TokenStore]:
        return [s for s in (self.read, self.write) if s is not None]

    def reload(self) -> None:
        """Re-read every token file; one that fails keeps its old tokens, and says why."""
        for store in self.stores():
            try:
                count = store.reload()
            except CredentialsError as exc:
                log.error("token reload failed, keeping the %d tokens loaded before: %s",
                          len(store), exc)
            else:
                log.info("reloaded %d token(s) from %s", count, store.path)


def auth_policy(security: SecurityConfig,
                write_methods: frozenset[str] = WRITE_METHODS) -> AuthPolicy | None:
    """The policy the settings ask for, token files read now; None when no token is needed."""
    if security.token_file is None and security.write_token_file is None:
        return None
    return AuthPolicy(
        read=TokenStore(security.token_file) if security.token_file else None,
        write=TokenStore(security.write_token_file) if security.write_token_file else None,
        auth_health=security.auth_health, write_methods=write_methods)


def refusing_handler(handler: grpc.RpcMethodHandler, code: grpc.StatusCode,
                     message: str) -> grpc.RpcMethodHandler:
    """A handler that aborts at once; no deserializer, so the request is never parsed."""

    def refuse(_request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)
