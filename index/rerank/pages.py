"""Page tokens: the next page's offset, tied to the index version that ranked it.

A token is opaque to clients (base64 of ``version:offset``). Order is stable across
the pages of one version (ties broken by id); a page asked with a token of another
version is answered from the served version and says so (``version_changed``).
"""

from __future__ import annotations

import base64
import binascii

from index.ann.query import InvalidQueryError

PREFIX = "vs1:"


def make_token(version: int, offset: int) -> str:
    raw = f"{PREFIX}{version}:{offset}".encode("ascii")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def read_token(token: str) -> tuple[int, int]:
    """(version, offset); InvalidQueryError for a token this server did not make."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
        if not raw.startswith(PREFIX):
            raise ValueError(raw)
        version, offset = (int(part) for part in raw[len(PREFIX):].split(":"))
        if version < 0 or offset < 0:
            raise ValueError(raw)
        return version, offset
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidQueryError("page_token is not a token from this server's responses") \
            from exc
