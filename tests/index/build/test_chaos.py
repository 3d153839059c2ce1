"""Chaos: a build SIGKILLed at random moments, again and again, then run to the end.

Whatever moment a kill lands on (start-up, the build lock, a shard half written,
a catalog transaction, training, publishing), the next run must resume: every
image stored exactly once and the index answering for each of them.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from index.ann.query import SearchParams
from index.ann.search import Searcher
from tests.conftest import ROOT, cli_env, run_visearch

SEED = 9
MAX_KILLS = 10
KILL_LOOP_SECONDS = 22  # then one run to the end: about 30 s in all


def stored_rows(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM images").fetchone()[0])
    except sqlite3.Error:  # not created yet
        return 0


def kill_at_random(args: list[str], db: Path, rng: random.Random, total: int) -> list[str]:
    """Start and SIGKILL the build up to MAX_KILLS times, until a run finishes first; what
    happened, for failure messages. Some kills land at a random time after start; the
    others just after the run stored a new shard, so they hit a build under way."""
    log: list[str] = []
    end = time.monotonic() + KILL_LOOP_SECONDS
    while len(log) < MAX_KILLS and time.monotonic() < end:
        before = stored_rows(db)
        proc = subprocess.Popen(args, cwd=ROOT, env=cli_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if before >= total:  # all stored: loading, training and publishing are left
            time.sleep(rng.uniform(1.0, 4.0))
            moment = "after start"
        elif rng.random() < 0.3:  # mostly start-up: imports, the lock, the catalog
            time.sleep(rng.uniform(0.1, 2.5))
            moment = "after start"
        else:
            while stored_rows(db) <= before and proc.poll() is None and time.monotonic() < end:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.05))
            moment = "mid-build" if stored_rows(db) > before else "after start"
        if proc.poll() is not None:
            log.append(f"finished before the kill ({before} rows)")
            break
        proc.kill()
        proc.wait()
        log.append(f"killed {moment} at {stored_rows(db)} rows")
    return log


@pytest.mark.slow
def test_random_sigkills_never_store_an_image_twice(tmp_path, photos):
    out = tmp_path / "idx"
    args = [sys.executable, "-m", "cli.main", "build", str(photos[0].parent), "--out", str(out),
            "--model", "tiny", "--workers", "0", "--batch-size", "1", "--shard-size", "16",
            "--quiet"]
    log = kill_at_random(args, out / "catalog.sqlite", random.Random(SEED), len(photos))
    assert any("mid-build" in entry for entry in log), log
    run_visearch(*args[3:], "--report", str(tmp_path / "report.json"), check=True)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["skipped"] + report["embedded"] + report["reused"] == len(photos), log
    assert report["failed"] == []
    assert stored_rows(out / "catalog.sqlite") == len(photos), log  # no image stored twice
    searcher = Searcher(out)
    ids = searcher.catalog.live_ids()
    assert len(ids) == searcher.ntotal == len(photos), log
    assert sorted(searcher.paths(ids).values()) == sorted(map(str, photos))
    hits = searcher.search(searcher.store.get(ids), SearchParams(k=1))
    np.testing.assert_array_equal(hits.ids[:, 0], ids)
