"""Log formats: readable text on a terminal, or one JSON object per line for collectors.

The JSON fields are fixed (time, level, logger, message, request_id, method, code,
duration_ms), so a log pipeline can index them without parsing messages. Request
fields come from the record's ``extra`` or from the request context the gRPC
interceptor sets (server.requestid, through ``current_request``); absent ones are null.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REQUEST_FIELDS = ("request_id", "method", "code", "duration_ms")

# The request a thread is handling now (set by server.requestid around each call).
current_request: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "visearch_request", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a traceback, if any, goes in ``exception``."""

    def __init__(self, context: Callable[[], dict[str, Any] | None] = current_request.get):
        super().__init__()
        self._context = context

    def format(self, record: logging.LogRecord) -> str:
        request = self._context() or {}
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in REQUEST_FIELDS:
            out[key] = getattr(record, key, request.get(key))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def formatter(kind: str) -> logging.Formatter:
    """The formatter ``--log-format`` names; json records carry the current request's id."""
    if kind == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)
