"""Request ids: one per call, from the client's ``x-request-id`` metadata or made here.

The id goes back in trailing metadata (so a client can quote it in a bug report),
is set in a context variable while the handler runs (so every log record the
call writes carries it, see common.logfmt), and a call that ends with an error
is logged once with its id, method, code and duration (all of it in server.callpath,
the server's one interceptor).
"""

from __future__ import annotations

import uuid
from typing import Any

HEADER = "x-request-id"
MAX_ID_CHARS = 128  # a longer client id is cut: it ends up in logs


def request_id(metadata: Any) -> str:
    """The client's id when it sent a printable one, else a new random one."""
    for key, value in metadata or ():
        if key == HEADER:
            text = str(value).strip()[:MAX_ID_CHARS]
            if text and text.isprintable():
                return text
    return uuid.uuid4().hex
