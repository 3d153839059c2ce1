"""Admission of image decodes against a pixel budget, so concurrent large images queue instead
of exhausting memory (16 images of 40 MP decode to several GB at once)."""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from collections.abc import Iterator

from common.errors import VisearchError

# After a decode this large, freed memory is handed back to the OS once no decode runs.
TRIM_AFTER_PIXELS = 4_000_000


def release_freed_memory() -> None:
    """glibc keeps freed image buffers in its arenas (GBs after a burst of large images);
    malloc_trim returns them. A no-op where glibc is absent."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


LARGE_BUFFER_BYTES = 8 * 1024 * 1024
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def large_buffers_from_the_os(threshold: int = LARGE_BUFFER_BYTES) -> bool:
    """Serve every allocation of ``threshold`` bytes or more by its own mmap, returned to
    the OS when freed. glibc's default threshold rises to 32 MiB after the first large free,
    so Pillow's 16 MiB image blocks then land in the arena of whichever RPC thread decoded
    them and stay there until a trim; with 16 threads decoding in turn that kept up to
    1.5 GB above the decode budget (tests/server/test_chaos.py). Process-wide, so it is set
    by `visearch serve` (server.app.serve) only. False without glibc or when refused."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


class OverloadedError(VisearchError):
    """The server has no room for this work now; retry after a short backoff."""


class PixelBudget:
    """At most ``capacity`` pixels decoding at once; others wait their turn (FIFO-ish)."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError("a pixel budget needs a capacity of at least 1")
        self.capacity = capacity
        self.in_use = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def admit(self, pixels: int, timeout: float | None) -> Iterator[None]:
        """Hold ``pixels`` (capped at the capacity) while the block runs.

        Raises:
            OverloadedError: no room within ``timeout`` seconds.
        """
        need = max(1, min(pixels, self.capacity))
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._changed:
            while self.in_use + need > self.capacity:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise OverloadedError(
                        f"image decoding is at its budget of {self.capacity / 1e6:,.0f} "
                        f"megapixels (--max-decode-megapixels); retry after a short backoff")
                self._changed.wait(remaining)
            self.in_use += need
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= need
                idle = self.in_use == 0
                self._changed.notify_all()
            if idle and need >= TRIM_AFTER_PIXELS:
                release_freed_memory()
