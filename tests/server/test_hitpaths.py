"""Hit paths remembered per served version (server/hitpaths.py) on a real index."""

import numpy as np

from index.ann.search import Searcher
from server.hitpaths import HitPaths


def test_cached_paths_are_the_catalogs_and_stay_per_version(ivf_template):
    first, second = Searcher(ivf_template.path), Searcher(ivf_template.path)
    try:
        ids = np.array([[5, 17, -1], [17, 19_999, 3]])
        expected = first.shown_paths(ids)
        assert sorted(expected) == [3, 5, 17, 19_999]
        cache = HitPaths()
        assert cache.shown(first, ids, False) == expected
        assert cache.shown(first, ids, False) == expected  # answered from memory now
        assert cache.shown(first, ids, True) == first.shown_paths(ids, absolute=True)
        assert cache._known(first, True) is not cache._known(first, False)  # kept apart
        # Another version starts empty, and what it is asked comes from its catalog.
        assert cache.shown(second, np.array([42]), False) == second.shown_paths([42])
        assert list(cache._known(second, False)) == [42]
    finally:
        first.close()
        second.close()


def test_cache_starts_afresh_at_its_limit(ivf_template):
    searcher = Searcher(ivf_template.path)
    try:
        cache = HitPaths(limit=4)
        cache.shown(searcher, np.arange(3), False)
        answer = cache.shown(searcher, np.arange(3, 6), False)
        assert answer == searcher.shown_paths(np.arange(3, 6))
        assert len(cache._known(searcher, False)) == 3  # cleared, then the new three
    finally:
        searcher.close()
