"""What a filter allows, computed once per filter and index version, not once per query.

A filtered query needs the mask of ids it may return (the version's held ids and the
filter), how many that is (the strategy depends on it) and, for faiss's
IDSelectorBitmap, the mask packed to bits. At a million ids each costs a pass over a
megabyte per query, as much as the search itself; the filter's own mask is already
cached by MetadataProvider until the metadata changes. Here the derived facts are
cached per searcher (one index version) under the filter mask they came from, so a
metadata change (a new filter mask object) or a change of the held ids (a live index)
makes new ones. Masks with exclusions are per query and are not cached.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from index.ann.search import Searcher

CACHE_SIZE = 32  # filters per searcher


@dataclass
class Allowed:
    """A read-only mask over ids 0..n-1 with its count; the packed bitmap on first use."""

    mask: np.ndarray
    count: int
    _bits: np.ndarray | None = field(default=None, repr=False)
    _ids: np.ndarray | None = field(default=None, repr=False)
    # faiss objects over the bitmap (a selector and its search parameters per nprobe):
    # read-only to faiss, so one set serves every query of this filter and version.
    memo: dict[object, object] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, mask: np.ndarray) -> Allowed:
        return cls(mask, int(np.count_nonzero(mask)))

    def ids(self) -> np.ndarray:
        """The allowed ids, ascending."""
        if self._ids is None:
            self._ids = np.flatnonzero(self.mask)
        return self._ids

    def bitmap(self) -> np.ndarray:
        """Bit (id & 7) of byte id >> 3, as IDSelectorBitmap reads it with no bounds
        check, so padded past the last id."""
        if self._bits is None:
            padded = np.concatenate([self.mask, np.zeros(64, bool)])
            self._bits = np.packbits(padded, bitorder="little")
        return self._bits


class AllowedCache:
    """Allowed per (filter text, held ids) of one searcher, least recently used out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, tuple[int, int]],
                                 tuple[np.ndarray, np.ndarray, Allowed]] = OrderedDict()

    def get(self, expr: str, held_key: tuple[int, int], held: np.ndarray,
            matches: np.ndarray) -> Allowed:
        key = (expr, held_key)
        with self._lock:
            found = self._items.get(key)
            if found is not None and found[0] is matches and found[1] is held:
                self._items.move_to_end(key)
                return found[2]
        mask = held & matches
        mask.flags.writeable = False
        allowed = Allowed.of(mask)
        with self._lock:
            self._items[key] = (matches, held, allowed)
            while len(self._items) > CACHE_SIZE:
                self._items.popitem(last=False)
        return allowed


def cache_of(searcher: Searcher) -> AllowedCache:
    found = getattr(searcher, "_allowed_cache", None)
    if found is None:
        found = AllowedCache()
        searcher._allowed_cache = found  # type: ignore[attr-defined]
    return found
