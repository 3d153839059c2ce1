"""Starts the query observers a server's configuration asks for and registers their
metrics: drift (on with metrics unless --drift-window 0) and live recall
(--recall-sample). Kept apart so server.metrics never imports faiss or the drift math
when neither is wanted."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from server.config import ServerConfig
from server.service import SearchService


def watch_queries(config: ServerConfig, service: SearchService,
                  registry: CollectorRegistry) -> list[Any]:
    observers: list[Any] = []
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
