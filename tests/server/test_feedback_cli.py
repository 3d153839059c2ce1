"""`visearch query --feedback-click` and `visearch feedback` as real processes against a
real server on 127.0.0.1 with a feedback log (untrained tiny model)."""

from __future__ import annotations

import json

import pytest

from server.app import SearchServer
from server.client import SearchClient
from server.config import ServerConfig
from server.feedback.config import FeedbackConfig
from server.feedback.log import read_log
from tests.conftest import run_visearch
from tests.server.conftest import serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def logging_server(index_dir, tmp_path_factory):
    with serving(ServerConfig(
        index_dir=index_dir, port=0, device="cpu", drain_seconds=0.0,
        feedback=FeedbackConfig(folder=tmp_path_factory.mktemp("feedback")))) as running:
        yield running


def events(server: SearchServer, query_id: str) -> list[tuple[str, int | None, int | None]]:
    assert server.servicer.feedback is not None
    server.servicer.feedback.log.flush()
    return [(e["type"], e.get("hit_id"), e.get("rank"))
            for e in read_log(server.config.feedback.folder)
            if e["query_id"] == query_id and e["type"] != "query"]


def test_query_then_click_and_feedback_command(logging_server, tmp_path):
    address = f"127.0.0.1:{logging_server.port}"
    vector = tmp_path / "q.json"
    with SearchClient(address, timeout=30) as client:
        vector.write_text(json.dumps([0.1] * client.info()["dim"]))
        second = client.search_vector([0.1] * client.info()["dim"], k=5).hits[1].id

    done = run_visearch("query", "--vector", str(vector), "--server", address, "-k", "5",
                        "--json", "--feedback-click", str(second))
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)  # the confirmation goes to stderr with --json
    assert "2 event(s) recorded" in done.stderr
    query_id = answer["query_id"]
    assert events(logging_server, query_id) == [("impression", None, None),
                                                ("click", second, 2)]

    more = run_visearch("feedback", query_id, "--click", str(second), "--rank", "2",
                        "--dwell-ms", "900", "--server", address)
    assert more.returncode == 0, more.stderr
    assert "2 event(s) recorded" in more.stdout
    assert events(logging_server, query_id)[2:] == [("click", second, 2), ("dwell", second, 2)]

    missing = run_visearch("query", "--vector", str(vector), "--server", address, "-k", "5",
                           "--feedback-click", "999999")
    assert missing.returncode == 2 and "not among the hits returned" in missing.stderr
    usage = run_visearch("feedback", query_id, "--click", "3", "--server", address)
    assert usage.returncode == 2 and "--rank" in usage.stderr
