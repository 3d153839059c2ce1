"""The paths shown with hits, remembered per served version.

A hit's path used to cost a SQLite query per request (one connection per RPC
thread, the GIL dropped and taken back around each step, which under
concurrent load means a thread switch). An id's shown path cannot change while
a version is served: ids are never reused, a catalog row's path is never
rewritten, and the build root a path is shown relative to belongs to the
version. So each version keeps the paths it has shown, and the catalog is asked
only about ids it has not returned before. A new version (or a live index's
new ids) starts from what the catalog says, never from a stale cache.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np

# Paths kept per version and absolute/relative choice; beyond, the cache starts afresh
# (about 100 bytes an entry: ~20 MB at the cap).
MAX_CACHED_PATHS = 200_000


class HitPaths:
    """``shown(searcher, ids, absolute)``: Searcher.shown_paths, answered from memory for
    ids this version has shown before. Safe from many threads (dict operations are
    atomic under the GIL; two threads missing the same id both ask the catalog)."""

    def __init__(self, limit: int = MAX_CACHED_PATHS):
        self.limit = limit
        self._per_version: weakref.WeakKeyDictionary[Any, dict[bool, dict[int, str]]] = \
            weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def shown(self, searcher: Any, ids: np.ndarray, absolute: bool) -> dict[int, str]:
        known = self._known(searcher, absolute)
        wanted = [i for i in ids.reshape(-1).tolist() if i >= 0]
        missing = [i for i in wanted if i not in known]
        if missing:
            found = searcher.shown_paths(missing, absolute)
            if len(known) + len(found) > self.limit:
                known.clear()
            known.update(found)
        # .get, not `in` then [] : another thread may clear the cache between the two.
        found_now = {i: known.get(i) for i in wanted}
        return {i: p for i, p in found_now.items() if p is not None}

    def _known(self, searcher: Any, absolute: bool) -> dict[int, str]:
        caches = self._per_version.get(searcher)
        if caches is None:
            with self._lock:
                caches = self._per_version.setdefault(searcher, {False: {}, True: {}})
        return caches[absolute]
