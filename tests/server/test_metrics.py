"""Prometheus metrics and request ids on a real server over the untrained tiny model."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from visearch.v1 import search_pb2, search_pb2_grpc

from common.logfmt import JsonFormatter
from index.store.directory import IndexDirectory
from server.app import SearchServer
from server.client import SearchClient
from server.config import ServerConfig
from server.metrics import MetricsPortError
from tests.conftest import ROOT, cli_env
from tests.server.conftest import serving

SEARCH = "VisualSearch/Search"


@pytest.fixture(scope="module")
def metered(index_dir):
    with serving(ServerConfig(index_dir=index_dir, port=0, device="cpu",
                              drain_seconds=0.0, metrics_port=0)) as running:
        yield running


def scrape(server: SearchServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample on /metrics, keyed by name and sorted labels."""
    assert server.metrics_endpoint is not None
    url = f"http://127.0.0.1:{server.metrics_endpoint.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def moved(before: dict, after: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_counters_move_by_exactly_the_calls_made(metered, corpus):
    before = scrape(metered)
    with SearchClient(f"127.0.0.1:{metered.port}", timeout=30) as client:
        for path in corpus[:3]:
            client.search_image(path, k=5)
        client.search_text("a red square", k=5)
        client.search_vector([0.1] * client.info()["dim"], k=5)
        with pytest.raises(grpc.RpcError) as refused:
            client.search_text("x", k=10**7)  # over max_k
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = scrape(metered)

    assert moved(before, after, "visearch_requests_total", method=SEARCH, code="OK") == 5
    assert moved(before, after, "visearch_requests_total", method=SEARCH,
                 code="INVALID_ARGUMENT") == 1
    assert moved(before, after, "visearch_requests_total", method="VisualSearch/Info",
                 code="OK") == 1
    assert moved(before, after, "visearch_request_seconds_count", method=SEARCH,
                 code="OK") == 5
    # Stages: 3 decoded images; 4 embedded (images and text); 5 searched.
    assert moved(before, after, "visearch_stage_seconds_count", stage="decode") == 3
    assert moved(before, after, "visearch_stage_seconds_count", stage="embed") == 4
    assert moved(before, after, "visearch_stage_seconds_count", stage="search") == 5
    assert moved(before, after, "visearch_embed_batch_size_sum") == 4
    assert after[("visearch_in_flight_requests", ())] == 0
    assert moved(before, after, "visearch_rejected_overload_total", reason="busy") == 0

    manifest = IndexDirectory(metered.config.index_dir).manifest()
    assert after[("visearch_index_version", ())] == manifest.version
    assert after[("visearch_index_vectors", ())] == len(corpus)
    assert after[("visearch_embed_queue_depth", ())] == 0
    assert after[("visearch_index_loaded_timestamp_seconds", ())] > 1.7e9
    assert after[("process_resident_memory_bytes", ())] > 0


def test_metrics_port_off_by_default_and_a_taken_port_says_so(server, metered):
    assert server.metrics_endpoint is None
    assert metered.metrics_endpoint is not None
    taken = SearchServer(ServerConfig(index_dir=metered.config.index_dir, port=0,
                                      metrics_port=metered.metrics_endpoint.port))
    with pytest.raises(MetricsPortError, match="--metrics-port"):
        taken.start()
    taken.stop(grace=0)


def test_request_id_is_echoed_or_made_and_logged_on_errors(metered, caplog):
    with grpc.insecure_channel(f"127.0.0.1:{metered.port}") as channel:
        stub = search_pb2_grpc.VisualSearchStub(channel)
        _, call = stub.Info.with_call(search_pb2.InfoRequest(), timeout=10,
                                      metadata=(("x-request-id", "abc-123"),))
        assert ("x-request-id", "abc-123") in call.trailing_metadata()
        _, call = stub.Info.with_call(search_pb2.InfoRequest(), timeout=10)
        made = dict(call.trailing_metadata())["x-request-id"]
        assert len(made) == 32 and int(made, 16) >= 0
        with caplog.at_level(logging.WARNING, logger="visearch.server.requests"), \
                pytest.raises(grpc.RpcError) as refused:
            stub.Search(search_pb2.SearchRequest(text="x", k=10**7), timeout=10,
                        metadata=(("x-request-id", "bad-1"),))
    assert dict(refused.value.trailing_metadata())["x-request-id"] == "bad-1"
    [record] = [r for r in caplog.records if getattr(r, "request_id", None) == "bad-1"]
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "bad-1"
    assert line["method"] == "/visearch.v1.VisualSearch/Search"
    assert line["code"] == "INVALID_ARGUMENT"
    assert line["duration_ms"] > 0
    assert line["level"] == "WARNING" and line["logger"] == "visearch.server.requests"


def test_log_format_json_writes_one_object_per_line():
    code = ("from cli.main import configure_logging; import logging; "
            "configure_logging(False, 'json'); log = logging.getLogger('visearch.t'); "
            "log.info('first'); log.warning('second %d', 2)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=cli_env(), cwd=ROOT, timeout=60, check=True)
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(x["level"], x["message"]) for x in lines] == [("INFO", "first"),
                                                ("WARNING", "second 2")]
    assert set(lines[0]) >= {"time", "logger", "request_id", "method", "code", "duration_ms"}
    assert lines[0]["request_id"] is None
