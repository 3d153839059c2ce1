"""docs/grafana-dashboard.json names only metrics a real server exports: every metric in
its queries is found on /metrics of a server with all monitoring on (untrained tiny model)."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from server.app import SearchServer
from server.client import SearchClient
from server.config import ServerConfig
from server.feedback.config import FeedbackConfig
from tests.conftest import ROOT
from tests.server.conftest import serving

DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
METRIC = re.compile(r"\b((?:visearch|process)_[a-z0-9_]+)")


@pytest.fixture(scope="module")
def monitored(index_dir, tmp_path_factory):
    with serving(ServerConfig(
        index_dir=index_dir, port=0, device="cpu", drain_seconds=0.0, metrics_port=0,
        recall_sample=1.0,
        feedback=FeedbackConfig(folder=tmp_path_factory.mktemp("fb")))) as running:
        yield running


def exported(server: SearchServer) -> set[str]:
    """Every sample name on /metrics (histogram _bucket/_sum/_count, counter _total)."""
    assert server.metrics_endpoint is not None
    url = f"http://127.0.0.1:{server.metrics_endpoint.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        lines = response.read().decode().splitlines()
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in lines
            if line and not line.startswith("#")}


def test_every_metric_in_the_dashboard_is_exported(monitored, corpus):
    with SearchClient(f"127.0.0.1:{monitored.port}", timeout=30) as client:
        first = client.search_image(corpus[0], k=3)
        client.search_text("a red square", k=3)
        client.search_vector([0.1] * client.info()["dim"], k=3)
        client.feedback(first.query_id, impression=True, click=(first.hits[0].id, 1))
    for observer in monitored.monitoring.observers:
        if hasattr(observer, "worker"):
            observer.worker.join()
    names = exported(monitored)

    dashboard = json.loads(DASHBOARD.read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in METRIC.findall(target["expr"])}
    assert len(used) >= 25
    assert sorted(used - names) == []
    # Each panel has a title and at least one query.
    assert all(p["title"] and p["targets"] for p in dashboard["panels"])
