"""Bearer tokens for the HTTP API, from the same kind of token file as the gRPC server.

Scripts send ``Authorization: Bearer <token>``; the page cannot put a header on an
``<img>`` request, so it stores the token in the ``visearch_token`` cookie
(SameSite=Strict: other sites' pages cannot use it). The page itself, its static
files and the health endpoints need no token.
"""

from __future__ import annotations

from fastapi import Request

from server.auth import TokenStore
from server.web.errors import WebError

COOKIE = "visearch_token"


def request_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE) or None


class RequireToken:
    """A FastAPI dependency: 401 unless the request carries a token from the store."""

    def __init__(self, store: TokenStore | None):
        self.store = store

    def __call__(self, request: Request) -> None:
        if self.store is None:
            return
        token = request_token(request)
        if token is None:
            raise WebError("UNAUTHENTICATED", "missing token: send 'Authorization: Bearer "
                           "<token>' (the page asks for one)")
        if not self.store.accepts(token):
            raise WebError("UNAUTHENTICATED", "invalid token")
