"""With metrics on: the re-rank and look-up stage observer and the
query observers the configuration asks for, with their metrics: drift (on unless
--drift-window 0) and live recall (--recall-sample). Started once the service is
loaded, so server.metrics itself never imports faiss or the drift math."""

from __future__ import annotations

from typing import Any

from server.config import ServerConfig
from server.gauges import StageObserver
from server.metrics import ServerMetrics
from server.service import SearchService


def watch_queries(config: ServerConfig, service: SearchService,
                  metrics: ServerMetrics) -> list[Any]:
    registry = metrics.registry
    observers: list[Any] = [StageObserver(metrics.stage)]
    if config.drift_window > 0:
        from server.drift import DriftCollector, DriftConfig, DriftTracker

        tracker = DriftTracker(DriftConfig(window=config.drift_window,
                                           threshold=config.drift_threshold))
        registry.register(DriftCollector(tracker))
        observers.append(tracker)
    if config.recall_sample > 0:
        from server.recall import LiveRecall, RecallCollector, RecallConfig

        live = LiveRecall(RecallConfig(fraction=config.recall_sample,
                                       max_per_second=config.recall_per_second))
        registry.register(RecallCollector(live))
        observers.append(live)
    service.observers.extend(observers)
    return observers
