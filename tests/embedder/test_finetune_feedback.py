"""`visearch finetune --feedback LOG` and the lineage check, on a real fine-tune: the
untrained tiny model, one short epoch, a small generated corpus indexed and served by a
real server whose feedback log a simulated user fills ("more like this" queries, clicks
on hits of the liked image's group). `visearch check` passes on the result and names a
modified or missing weights file with the mending command."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from embedder import EmbedderConfig
from embedder.finetune.config import FinetuneError
from embedder.finetune.feedback import click_pairs, feedback_labels
from evaluation.quality import read_labels
from index.build.pipeline import BuildConfig, run_build
from index.build.publish import IndexingOptions
from index.check import check_directory
from index.store.directory import IndexDirectory
from server.app import SearchServer
from server.client import SearchClient
from server.config import ServerConfig
from server.feedback.config import FeedbackConfig
from server.feedback.log import read_log
from tests.conftest import ROOT, run_visearch

pytestmark = pytest.mark.slow
GROUPS = 6  # 36 indexed images, 6 per group


def write_sample(root):
    spec = importlib.util.spec_from_file_location("make_sample_corpus",
                                                  ROOT / "scripts" / "make_sample_corpus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_corpus(root / "data", GROUPS)


def simulate_clicks(index, log_folder, truth):
    """Every image is liked once; the user clicks the hits of the liked image's group."""
    server = SearchServer(ServerConfig(index_dir=index, port=0, device="cpu",
                                       drain_seconds=0.0, follow_seconds=0,
                                       feedback=FeedbackConfig(folder=log_folder)))
    server.start()
    server.load()
    catalog = IndexDirectory(index).catalog(readonly=True)
    rows = dict(catalog.live_rows())
    catalog.close()
    clicks = 0
    try:
        with SearchClient(f"127.0.0.1:{server.port}", timeout=30) as client:
            for liked, path in sorted(rows.items()):
                result = client.search_like(liked, k=8)
                for rank, hit in enumerate(result.hits, 1):
                    if truth[rows[hit.id]] == truth[path]:
                        clicks += client.feedback(result.query_id, click=(hit.id, rank))
        assert server.servicer.feedback is not None
        server.servicer.feedback.log.flush()
    finally:
        server.stop(grace=1)
    return rows, clicks


@pytest.fixture(scope="module")
def sample(tmp_path_factory, tiny_embedder):
    """IDX (untrained tiny), its served feedback log, and NEW_IDX fine-tuned on the clicks
    through the command line."""
    root = tmp_path_factory.mktemp("feedback")
    write_sample(root)
    run_build(BuildConfig(inputs=(str(root / "data" / "corpus"),), out=root / "idx",
                          embedder=EmbedderConfig(model="tiny", device="cpu"), workers=0,
                          indexing=IndexingOptions(progress=False)), embedder=tiny_embedder)
    truth = read_labels(root / "data" / "labels.csv")
    rows, clicks = simulate_clicks(root / "idx", root / "log", truth)
    assert clicks > 2 * len(rows)  # the untrained model finds some of each group
    tuned = run_visearch("finetune", str(root / "idx"), "--out", str(root / "tuned"),
                         "--feedback", str(root / "log"), "--epochs", "1", "--batch-size",
                         "12", "--workers", "0", "--device", "cpu", "--json",
                         str(root / "report.json"), check=True)
    return {"root": root, "rows": rows, "truth": truth, "stdout": tuned.stdout}


def test_clicks_become_groups_of_one_true_group_each(sample):
    root, rows, truth = sample["root"], sample["rows"], sample["truth"]
    found = feedback_labels(root / "log", root / "idx")
    by_group: dict[str, set[str]] = {}
    for path, group in found.labels.items():
        by_group.setdefault(group, set()).add(truth[path])
    assert all(len(true) == 1 for true in by_group.values()), by_group  # no wrong joins
    assert found.groups == len(by_group) >= GROUPS
    assert found.queries == len(rows) and found.skipped_ids == []
    assert f"{found.pairs} positive pairs from {found.queries} clicked queries" in \
        sample["stdout"]

    entries = read_log(root / "log")
    liked = [e["like_id"] for e in entries if e["type"] == "query"]
    assert sorted(liked) == sorted(rows)  # the log names each like query's image


def test_feedback_fine_tune_records_its_source_and_checks_whole(sample):
    root = sample["root"]
    directory = IndexDirectory(root / "tuned")
    lineage = directory.manifest().model.finetune
    assert lineage["feedback"]["log"] == str((root / "log").resolve())
    assert lineage["feedback"]["queries"] == len(sample["rows"])
    assert lineage["settings"]["objective"] == "supervised"
    report = json.loads((root / "report.json").read_text())
    assert report["evaluation"]["heldout_images"] > 0
    assert "NEW_IDX (fine-tuned)" in report["evaluation"]["rows"]
    findings = check_directory(directory)
    assert all(f.ok for f in findings), findings
    assert [f.part for f in findings if f.part == "weights"] == ["weights"]


def test_unusable_logs_are_refused_with_the_reason(sample, tmp_path):
    idx = sample["root"] / "idx"
    with pytest.raises(FinetuneError, match="no such file or folder"):
        feedback_labels(tmp_path / "absent", idx)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(FinetuneError, match=r"holds no training pairs \(0 queries"):
        feedback_labels(empty, idx)
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text("".join(json.dumps(e) + "\n" for e in [
        {"type": "query", "query_id": "q", "kind": "like", "like_id": 0, "ids": [5000]},
        {"type": "click", "query_id": "q", "hit_id": 5000, "rank": 1}]))
    with pytest.raises(FinetuneError, match=r"1 clicked or liked ids are not in .*first: "
                                            r"5000.*another index"):
        feedback_labels(foreign, idx)


def test_click_pairs_join_the_liked_image_and_co_clicks():
    entries = [
        {"type": "query", "query_id": "a", "kind": "like", "like_id": 1, "ids": [2, 3]},
        {"type": "click", "query_id": "a", "hit_id": 2, "rank": 1},
        {"type": "click", "query_id": "a", "hit_id": 3, "rank": 2},
        {"type": "click", "query_id": "a", "hit_id": 3, "rank": 2},  # twice: one pair
        {"type": "query", "query_id": "b", "kind": "image", "ids": [7, 8, 9]},
        {"type": "click", "query_id": "b", "hit_id": 7, "rank": 1},  # no anchor, one click
        {"type": "query", "query_id": "c", "kind": "text", "ids": [4, 6]},
        {"type": "click", "query_id": "c", "hit_id": 4, "rank": 1},
        {"type": "click", "query_id": "c", "hit_id": 6, "rank": 2},
        {"type": "impression", "query_id": "c"}]
    found = click_pairs(entries)
    assert found.pairs == [(1, 2), (1, 3), (2, 3), (4, 6)]
    assert (found.queries, found.clicks) == (3, 5)


@pytest.mark.parametrize("damage", ["modified", "missing"])
def test_check_names_damaged_fine_tuned_weights(sample, tmp_path, damage):
    copy = tmp_path / "tuned"
    shutil.copytree(sample["root"] / "tuned", copy)
    target = copy / "finetune" / "open_clip_model.safetensors"
    if damage == "modified":
        data = bytearray(target.read_bytes())
        data[-1] ^= 0xFF  # the last tensor's last byte: same size, other weights
        target.write_bytes(bytes(data))
    else:
        target.unlink()
    result = run_visearch("check", str(copy))
    assert result.returncode == 1, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if " weights " in x)
    assert line.startswith("FAIL")
    said = "were modified" if damage == "modified" else "are missing"
    assert f"finetune/open_clip_model.safetensors {said}" in line
    assert "visearch finetune" in line and "--out NEW_DIR" in line
    assert "Traceback" not in result.stderr
