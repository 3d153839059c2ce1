"""Query ids, the Feedback RPC, its log and CTR metrics, on a real server (untrained tiny
model) and on the log and statistics directly."""

from __future__ import annotations

import grpc
import pytest
from visearch.v1 import search_pb2

from server.client import SearchClient, text_request
from server.config import ServerConfig
from server.feedback.api import FeedbackRecorder
from server.feedback.config import FeedbackConfig
from server.feedback.log import FeedbackLog, log_files, read_log
from server.feedback.stats import ClickStats
from tests.server.conftest import serving
from tests.server.test_metrics import scrape

QUERY_KEYS = {"type", "time", "query_id", "kind", "index_version", "ids"}


@pytest.fixture(scope="module")
def recording(index_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("feedback")
    with serving(ServerConfig(index_dir=index_dir, port=0, device="cpu",
                              drain_seconds=0.0, metrics_port=0,
                              feedback=FeedbackConfig(folder=folder))) as running:
        yield running


def test_feedback_is_logged_beside_the_answers_and_gives_ctr(recording, corpus):
    with SearchClient(f"127.0.0.1:{recording.port}", timeout=30) as client:
        first = client.search_image(corpus[0], k=5)
        second = client.search_text("a blue circle", k=3)
        batch = client.search_batch([text_request("one", k=2), text_request("two", k=2)])
        assert client.feedback(first.query_id, impression=True,
                               click=(first.hits[1].id, 2), dwell_ms=1500) == 3
        assert client.feedback(second.query_id, impression=True) == 1
        with pytest.raises(grpc.RpcError) as refused:
            client.stub.Feedback(search_pb2.FeedbackRequest(
                query_id=second.query_id, events=[search_pb2.FeedbackEvent(kind="like")]))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as unnamed:
            client.feedback("", impression=True)
        assert unnamed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ids = [first.query_id, second.query_id, *(r.query_id for r in batch)]
    assert len(set(ids)) == 4 and all(len(i) == 32 for i in ids)

    assert recording.servicer.feedback is not None
    recording.servicer.feedback.log.flush()
    entries = read_log(recording.config.feedback.folder)
    queries = {e["query_id"]: e for e in entries if e["type"] == "query"}
    assert set(queries) == set(ids)
    assert all(set(e) == QUERY_KEYS for e in queries.values())  # no text, no image bytes
    assert queries[first.query_id]["kind"] == "image"
    assert queries[second.query_id]["kind"] == "text"
    assert queries[first.query_id]["ids"] == [h.id for h in first.hits]
    assert queries[first.query_id]["index_version"] == first.index_version
    events = [(e["type"], e["query_id"], e.get("rank")) for e in entries if e["type"] != "query"]
    assert events == [("impression", first.query_id, None), ("click", first.query_id, 2),
                      ("dwell", first.query_id, 2), ("impression", second.query_id, None)]

    metrics = scrape(recording)
    assert metrics[("visearch_feedback_queries", ())] == 2
    assert metrics[("visearch_feedback_ctr", ())] == 0.5
    assert metrics[("visearch_feedback_mrr", ())] == 0.25  # (1/2 + 0) / 2
    assert metrics[("visearch_feedback_clicks", (("rank", "2"),))] == 1
    assert metrics[("visearch_feedback_log_dropped_total", ())] == 0


def test_without_a_log_answers_have_ids_and_feedback_is_refused(client):
    result = client.search_text("x", k=2)
    assert len(result.query_id) == 32
    with pytest.raises(grpc.RpcError) as refused:
        client.feedback(result.query_id, impression=True)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "--feedback-log" in refused.value.details()


def test_query_text_is_stored_only_when_asked(tmp_path):
    request = search_pb2.SearchRequest(text="red shoes")
    response = search_pb2.SearchResponse(hits=[search_pb2.Hit(id=7)], index_version=3)
    for keep, folder in ((False, tmp_path / "plain"), (True, tmp_path / "text")):
        recorder = FeedbackRecorder(FeedbackConfig(folder=folder, log_query_text=keep))
        recorder.query("q1", request, response)
        recorder.close()
        [entry] = read_log(folder)
        assert entry["ids"] == [7] and entry["index_version"] == 3
        assert entry.get("text") == ("red shoes" if keep else None)


def test_log_rotates_by_size_and_reads_back_in_order(tmp_path):
    log = FeedbackLog(tmp_path, max_bytes=200)
    for i in range(30):
        assert log.record({"type": "click", "n": i})
    log.close()
    files = log_files(tmp_path)
    assert len(files) > 3 and files[-1].name == "feedback.jsonl"
    assert all(f.stat().st_size < 200 + 40 for f in files)
    assert [e["n"] for e in read_log(tmp_path)] == list(range(30))
    assert log.written == 30 and log.dropped == 0
    (tmp_path / "feedback.jsonl").write_text('{"n": 30}\n{"n": 3', encoding="utf-8")
    assert [e["n"] for e in read_log(tmp_path)][-1] == 30  # a torn last line is skipped


WRITER = """
import sys
from server.feedback.log import FeedbackLog
log = FeedbackLog(sys.argv[1], max_bytes=int(sys.argv[2]))
for i in range(int(sys.argv[3])):
    assert log.record({"writer": int(sys.argv[4]), "n": i, "pad": "x" * 12000})
log.close(60)
assert log.written == int(sys.argv[3])
"""


def test_processes_appending_to_one_log_never_tear_a_line(tmp_path):
    """`serve --processes N` appends from N processes: lines longer than a stdio buffer
    (12 kB) stay whole, rotation under contention loses nothing and reuses no name."""
    import subprocess
    import sys

    from tests.conftest import ROOT, cli_env

    writers, each = 3, 150
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(400_000),
                               str(each), str(w)], cwd=ROOT, env=cli_env())
             for w in range(writers)]
    assert [p.wait(timeout=120) for p in procs] == [0] * writers
    files = log_files(tmp_path)
    assert len(files) > 3
    lines = [line for f in files for line in f.read_bytes().splitlines()]
    entries = read_log(tmp_path)
    assert len(lines) == len(entries) == writers * each  # no torn or lost line
    for w in range(writers):  # each writer's own lines keep their order
        assert [e["n"] for e in entries if e["writer"] == w] == list(range(each))


def test_click_statistics_forget_queries_older_than_the_window():
    now = [0.0]
    stats = ClickStats(window_seconds=10, clock=lambda: now[0])
    stats.shown("a")
    stats.clicked("a", 1)
    stats.clicked("a", 3)  # only the first click counts for MRR
    stats.clicked("b", 12)  # a click implies an impression
    stats.shown("c")
    s = stats.summary()
    assert (s.queries, s.clicked) == (3, 2)
    assert s.ctr == pytest.approx(2 / 3) and s.mrr == pytest.approx((1 + 1 / 12) / 3)
    assert s.clicks_by_rank == {"1": 1, "3": 1, "11+": 1}
    now[0] = 5.0
    stats.shown("d")
    now[0] = 12.0
    s = stats.summary()
    assert (s.queries, s.clicked, s.clicks_by_rank) == (1, 0, {})
