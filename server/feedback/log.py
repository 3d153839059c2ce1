"""An append-only JSON Lines log that a search never waits for.

``record`` puts an entry on a bounded queue and returns at once; one writer thread
appends what is queued and flushes. When the queue is full (the disk is slower
than the traffic) entries are dropped and counted rather than slowing searches.
The current file is ``feedback.jsonl``; past ``max_bytes`` it is renamed
``feedback.<UTC time>.<n>.jsonl`` and a new one begins, so names sort by age
(``log_files`` lists them oldest first, the current one last).

Several processes may append to one log (``visearch serve --processes N``): the file
is opened O_APPEND and each entry is one ``write`` of one whole line, so lines from
different processes never interleave; rotation happens under an ``flock`` and only
by the process that finds the current file still the one it has open, the others
just reopen; a rotated name is never reused.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("visearch.server")

CURRENT = "feedback.jsonl"
LOCK = ".feedback.lock"  # held while the current file is rotated
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

    def _open(self) -> int:
        return os.open(self.folder / CURRENT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _rotate(self, fd: int) -> int:
        """Past ``max_bytes``: rename the file this process has open, unless another
        process already did; either way, go on in a fresh current file."""
        with (self.folder / LOCK).open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.folder / CURRENT
            try:
                mine = os.path.samestat(os.fstat(fd), os.stat(current))
            except FileNotFoundError:
                mine = False
            if mine:
                self._rotations += 1
                stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
                n = 1  # the first free number: names sort by age across processes too
                while (target := self.folder / f"feedback.{stamp}.{n:06d}.jsonl").exists():
                    n += 1  # another process rotated in the same second
                current.rename(target)
            fresh = self._open()
            os.close(fd)
            return fresh

    def _loop(self) -> None:
        fd = self._open()
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
                        if os.fstat(fd).st_size >= self.max_bytes:
                            fd = self._rotate(fd)
                        _write_line(fd, (json.dumps(entry, separators=(",", ":")) + "\n")
                                    .encode("utf-8"))
                        self.written += 1
                except OSError:
                    log.exception("feedback log write failed; %d entries lost", len(batch))
                finally:
                    for _ in batch:
                        self._queue.task_done()
                if stop:
                    return
        finally:
            os.close(fd)


def _write_line(fd: int, line: bytes) -> None:
    """One ``write`` per line: with O_APPEND the kernel puts it whole at the end of the
    file, whatever other processes append. Only a short write (disk full) loops."""
    done = os.write(fd, line)
    while done < len(line):
        done += os.write(fd, line[done:])
