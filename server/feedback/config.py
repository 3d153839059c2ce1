"""Feedback settings, apart so the command line can build them without importing gRPC."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_WINDOW_SECONDS = 3600.0


@dataclass(frozen=True)
class FeedbackConfig:
    folder: Path  # the JSON Lines log (server.feedback.log)
    log_query_text: bool = False  # text queries' text in the log; never image bytes
    window_seconds: float = DEFAULT_WINDOW_SECONDS  # CTR / MRR window
    max_bytes: int = 64 * 1024 * 1024  # rotate the log file past this size
