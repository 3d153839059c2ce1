"""`visearch eval --feedback`: clicks as relevance labels over a real feedback log."""

from __future__ import annotations

import json
import math

import pytest

from evaluation.feedback import click_labels, feedback_metrics, read_feedback
from server.feedback.log import FeedbackLog
from tests.conftest import run_visearch


@pytest.fixture()
def feedback_dir(tmp_path):
    folder = tmp_path / "feedback"
    log = FeedbackLog(folder, max_bytes=150)  # small: the entries span rotated files
    for entry in [
        {"type": "query", "query_id": "q1", "kind": "image", "index_version": 1,
         "ids": [10, 11, 12]},
        {"type": "query", "query_id": "q2", "kind": "text", "index_version": 1,
         "ids": [20, 21]},
        {"type": "query", "query_id": "q3", "kind": "text", "index_version": 1, "ids": [30]},
        {"type": "impression", "query_id": "q1"},
        {"type": "click", "query_id": "q1", "hit_id": 11, "rank": 2},
        {"type": "click", "query_id": "q2", "hit_id": 20, "rank": 1},
        {"type": "click", "query_id": "q2", "hit_id": 21, "rank": 2},
        {"type": "click", "query_id": "q9", "hit_id": 5, "rank": 1},
    ]:
        log.record(entry)
    log.close()
    return folder


def test_clicks_become_labels_of_the_served_rankings(feedback_dir):
    labels = click_labels(read_feedback(feedback_dir))
    assert labels.rankings == [[10, 11, 12], [20, 21]]
    assert labels.relevants == [{11}, {20, 21}]
    assert (labels.unclicked, labels.orphan_clicks) == (1, 1)
    m = feedback_metrics(labels, [1, 3])
    assert m[1]["recall"] == pytest.approx((0 + 0.5) / 2)
    assert m[3]["recall"] == pytest.approx(1.0)
    assert m[3]["mrr"] == pytest.approx((0.5 + 1) / 2)
    assert m[3]["ndcg"] == pytest.approx((1 / math.log2(3) + 1) / 2)


def test_eval_feedback_command(feedback_dir, tmp_path):
    out = tmp_path / "report.json"
    result = run_visearch("eval", str(tmp_path), "--feedback", str(feedback_dir),
                          "--k", "1,3", "--json", str(out), check=True, timeout=120)
    assert "2 queries with clicks (1 without" in result.stdout
    report = json.loads(out.read_text())
    assert report["queries"] == 2
    assert report["metrics"]["3"]["mrr"] == pytest.approx(0.75)
    missing = run_visearch("eval", str(tmp_path), "--feedback", str(tmp_path / "none"))
    assert missing.returncode == 2 and "--feedback-log" in missing.stderr
