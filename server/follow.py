"""Following the index directory: when CURRENT names a new version, load it in the
background while the old one keeps answering, then swap the handle.

Each request takes ``IndexHandle.current`` once, so it is answered wholly by one
version; the replaced Searcher is dropped here and freed (faiss index, mmaps,
catalog connections) when the last request holding it returns. A version built
with another model is refused: the old one keeps serving, and the log and Info say why.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import signal
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

from common.errors import VisearchError
from embedder.config import ModelIdentity
from index.ann.search import Searcher
from index.store.contract import ModelMismatchError, check_same_model
from index.store.directory import IndexDirectory
from server.runtime import IndexHandle

log = logging.getLogger("visearch.server")


def check_compatible(served: ModelIdentity, candidate: ModelIdentity) -> None:
    """A version may replace the served one only with vectors of the served model."""
    check_same_model(candidate, served)
    if candidate.embed_dim != served.embed_dim:
        raise ModelMismatchError(f"the new version has {candidate.embed_dim}-dimensional "
                                 f"vectors, the served model {served.embed_dim}")


class VersionFollower:
    """Polls CURRENT every ``interval`` seconds (None: only when ``check_now`` is called,
    e.g. on SIGHUP) and swaps in each new version whose model matches the served one."""

    def __init__(self, directory: IndexDirectory, handle: IndexHandle,
                 served_model: ModelIdentity, interval: float | None):
        self.directory = directory
        self.handle = handle
        self.served_model = served_model
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._released = threading.Event()
        self._thread = threading.Thread(target=self._run, name="follow-current", daemon=True)

    def start(self) -> VersionFollower:
        self._thread.start()
        return self

    def check_now(self) -> None:
        """Look at CURRENT at once (safe from a signal handler: it only sets an event)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.release_freed()
                self.poll()
            except Exception:  # noqa: BLE001 - the follower must outlive any one bad version
                log.exception("following %s failed; still serving version %d",
                              self.directory.path, self.handle.current.manifest.version)

    def release_freed(self) -> None:
        """Return the memory of replaced versions that are gone to the OS."""
        if self._released.is_set():
            self._released.clear()
            trim_heap()

    def poll(self) -> bool:
        """Swap in the version CURRENT names if it is new and acceptable; True if swapped."""
        try:
            version = self.directory.current_version()
        except VisearchError as exc:
            log.warning("cannot read CURRENT (%s); still serving version %d", exc,
                        self.handle.current.manifest.version)
            return False
        if version is None or version == self.handle.current.manifest.version \
                or version == self.handle.refused_version:
            return False
        try:
            manifest = self.directory.manifest(version)
            check_compatible(self.served_model, manifest.model)
        except ModelMismatchError as exc:
            self.handle.refuse(version, str(exc))
            log.error("refusing version %d of %s: %s; still serving version %d", version,
                      self.directory.path, exc, self.handle.current.manifest.version)
            return False
        except VisearchError as exc:  # pruned or damaged meanwhile: the next poll retries
            log.warning("cannot load version %d yet: %s", version, exc)
            return False
        searcher = Searcher(self.directory, version)
        previous = self.handle.swap(searcher)
        # Freed when its last request returns; the heap is trimmed at the next tick (a
        # weakref callback runs before the object's arrays are actually freed).
        weakref.finalize(previous, self._released.set)
        log.info("now serving version %d (%d vectors, %s); version %d is released once its "
                 "last request returns", version, searcher.ntotal, manifest.index.spec,
                 previous.manifest.version)
        return True


def trim_heap() -> None:
    """Hand freed heap pages back to the OS once a replaced version is gone.

    glibc raises its mmap threshold after the first large free, so later versions'
    arrays land on the heap, and freeing them leaves RSS one version higher for good;
    ``malloc_trim`` returns those pages (measured: scripts/measure_swap_rss.py)."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            _LIBC = False
    if _LIBC and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


_LIBC: Any = None


def chain_sighup(action: Callable[[], None]) -> Callable[[], None]:
    """Run ``action`` on SIGHUP after whatever handler was installed before (the token
    reload); returns the undo."""
    if not hasattr(signal, "SIGHUP"):
        return lambda: None
    previous: Any = signal.getsignal(signal.SIGHUP)

    def on_sighup(signum: int, frame: FrameType | None) -> None:
        if callable(previous):
            previous(signum, frame)
        action()

    signal.signal(signal.SIGHUP, on_sighup)

    def restore() -> None:
        signal.signal(signal.SIGHUP, previous)

    return restore
