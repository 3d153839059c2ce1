"""CTR, clicks by rank and MRR of the first click over a rolling window of queries.

A query counts once it was shown (an impression event, or a click, which implies
one). CTR is the share of shown queries with at least one click; MRR averages
1/rank of each shown query's first click, 0 for queries without a click. Ranks
past 10 share one label, so the clicks-by-rank series stay few.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from server.feedback.config import DEFAULT_WINDOW_SECONDS

TOP_RANK_LABEL = 10


def rank_label(rank: int) -> str:
    return str(rank) if rank <= TOP_RANK_LABEL else f"{TOP_RANK_LABEL + 1}+"


@dataclass(frozen=True)
class ClickSummary:
    queries: int  # shown queries in the window
    clicked: int  # of those, with at least one click
    ctr: float
    mrr: float
    clicks_by_rank: dict[str, int]


class ClickStats:
    """Thread-safe; ``clock`` is injectable so a window can be tested without waiting."""

    def __init__(self, window_seconds: float = DEFAULT_WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.window = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        # query id -> (first seen, first click rank or 0), oldest first
        self._queries: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._clicks: deque[tuple[float, int]] = deque()

    def shown(self, query_id: str) -> None:
        with self._lock:
            self._queries.setdefault(query_id, (self._clock(), 0))

    def clicked(self, query_id: str, rank: int) -> None:
        with self._lock:
            now = self._clock()
            seen, first = self._queries.get(query_id, (now, 0))
            self._queries[query_id] = (seen, first or rank)
            self._clicks.append((now, rank))

    def _expire(self) -> None:
        horizon = self._clock() - self.window
        while self._queries and next(iter(self._queries.values()))[0] < horizon:
            self._queries.popitem(last=False)
        while self._clicks and self._clicks[0][0] < horizon:
            self._clicks.popleft()

    def summary(self) -> ClickSummary:
        with self._lock:
            self._expire()
            firsts = [first for _, first in self._queries.values()]
            ranks = Counter(rank_label(rank) for _, rank in self._clicks)
        clicked = sum(1 for f in firsts if f)
        n = len(firsts)
        return ClickSummary(queries=n, clicked=clicked, ctr=clicked / n if n else 0.0,
                            mrr=sum(1 / f for f in firsts if f) / n if n else 0.0,
                            clicks_by_rank=dict(ranks))


class ClickCollector(Collector):
    """The window's statistics as gauges, read at scrape time."""

    def __init__(self, stats: ClickStats):
        self.stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        s = self.stats.summary()
        window = f" over the last {self.stats.window:.0f} s"
        yield GaugeMetricFamily("visearch_feedback_queries", "queries shown" + window,
                                value=s.queries)
        yield GaugeMetricFamily("visearch_feedback_ctr",
                                "shown queries with a click / shown queries" + window,
                                value=s.ctr)
        yield GaugeMetricFamily("visearch_feedback_mrr",
                                "mean 1/rank of the first click per shown query" + window,
                                value=s.mrr)
        ranks = GaugeMetricFamily("visearch_feedback_clicks", "clicks by rank" + window,
                                  labels=["rank"])
        for label, count in sorted(s.clicks_by_rank.items()):
            ranks.add_metric([label], count)
        yield ranks
