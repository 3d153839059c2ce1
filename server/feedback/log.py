"""An append-only JSON Lines log that a search never waits for.

``record`` puts an entry on a bounded queue and returns at once; one writer thread
appends what is queued and flushes. When the queue is full (the disk is slower
than the traffic) entries are dropped and counted rather than slowing searches.
The current file is ``feedback.jsonl``; past ``max_bytes`` it is renamed
``feedback.<UTC time>.<n>.jsonl`` and a new one begins, so names sort by age
(``log_files`` lists them oldest first, the current one last).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger("visearch.server")

CURRENT = "feedback.jsonl"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_QUEUE = 10_000


def log_files(folder: Path) -> list[Path]:
    """The log's files, oldest first."""
    rotated = sorted(p for p in folder.glob("feedback.*.jsonl") if p.name != CURRENT)
    current = folder / CURRENT
    return rotated + ([current] if current.exists() else [])


def read_log(folder: Path) -> list[dict[str, Any]]:
    """Every entry of every file, oldest first."""
    return [entry for path in log_files(folder) for entry in read_log_file(path)]


def read_log_file(path: Path) -> list[dict[str, Any]]:
    """One file's entries; a line cut short by a crash is skipped."""
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


class FeedbackLog:
    def __init__(self, folder: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 queue_size: int = DEFAULT_QUEUE):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(queue_size)
        self.written = 0
        self.dropped = 0
        self._rotations = 0
        self._thread = threading.Thread(target=self._loop, name="feedback-log", daemon=True)
        self._thread.start()

    def record(self, entry: dict[str, Any]) -> bool:
        """Queue ``entry``; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait(entry)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def flush(self) -> None:
        """Wait until everything queued so far is on disk (tests, shutdown)."""
        self._queue.join()

    def close(self, timeout: float = 10.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _open(self) -> TextIO:
        return (self.folder / CURRENT).open("a", encoding="utf-8")

    def _rotate(self, out: TextIO) -> TextIO:
        out.close()
        self._rotations += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        (self.folder / CURRENT).rename(
            self.folder / f"feedback.{stamp}.{self._rotations:06d}.jsonl")
        return self._open()

    def _loop(self) -> None:
        out = self._open()
        try:
            while True:
                batch = [self._queue.get()]
                while True:  # write what has piled up in one go
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = None in batch
                try:
                    for entry in batch:
                        if entry is None:
                            continue
                        if out.tell() >= self.max_bytes:
                            out = self._rotate(out)  # flushes: close() writes the buffer
                        out.write(json.dumps(entry, separators=(",", ":")) + "\n")
                        self.written += 1
                    out.flush()
                except OSError:
                    log.exception("feedback log write failed; %d entries lost", len(batch))
                finally:
                    for _ in batch:
                        self._queue.task_done()
                if stop:
                    return
        finally:
            out.close()
