"""The build's choice of model threads while decode workers share the cores."""

from __future__ import annotations

import time

import torch

from embedder.threads import KEEP_BATCHES, PROBE_BATCHES, paced


def test_every_batch_in_order_and_the_setting_restored():
    before = torch.get_num_threads()
    assert list(paced(range(100), most=2)) == list(range(100))
    assert list(paced(iter([]), most=2)) == []
    assert torch.get_num_threads() == before


def test_the_faster_thread_count_is_kept_after_probing_both():
    for slow_when, expected in ((lambda n: n > 1, 1), (lambda n: n == 1, 2)):
        kept = []
        for i in paced(range(1 + 2 * PROBE_BATCHES + KEEP_BATCHES), most=2):
            threads = torch.get_num_threads()
            time.sleep(0.004 if slow_when(threads) else 0)
            if i > 2 * PROBE_BATCHES:
                kept.append(threads)
        assert kept == [expected] * KEEP_BATCHES
