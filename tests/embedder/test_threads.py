"""The build's choice of model threads while decode workers share the cores."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import torch

from embedder.threads import WINDOW, paced


def _produced(count: int, seconds: float) -> Iterator[int]:
    for i in range(count):
        time.sleep(seconds)
        yield i


def _threads_seen(batches: Iterator[int] | range, work: Callable[[int], float],
                  cpu_clock: Callable[[], float] = time.perf_counter) -> list[int]:
    """The model's ``work`` is a sleep; by default the thread counts as on a core then."""
    seen = []
    for _ in paced(batches, most=2, cpu_clock=cpu_clock):
        threads = torch.get_num_threads()
        seen.append(threads)
        time.sleep(work(threads))
    return seen


def test_every_batch_in_order_and_the_setting_restored():
    before = torch.get_num_threads()
    assert list(paced(range(100), most=2)) == list(range(100))
    assert list(paced(iter([]), most=2)) == []
    assert torch.get_num_threads() == before


def test_a_model_waiting_for_decoding_keeps_one_thread():
    assert _threads_seen(_produced(4 * WINDOW, 0.004), lambda _: 0.0) == [1] * (4 * WINDOW)


def test_a_busy_model_keeps_more_threads_only_where_they_are_faster():
    faster = _threads_seen(range(4 * WINDOW), lambda n: 0.008 / n)
    assert faster == [1] * WINDOW + [2] * (3 * WINDOW)
    slower = _threads_seen(range(6 * WINDOW), lambda n: 0.004 * n)
    # one window tried with 2, then a wait of 2 windows before the next try
    assert slower == [1] * WINDOW + [2] * WINDOW + [1] * (2 * WINDOW) + [2] * WINDOW + \
        [1] * WINDOW


def test_a_heavy_model_starts_with_every_thread_and_drops_them_when_decoding_lags():
    seen = [torch.get_num_threads() for _ in paced(range(WINDOW), most=2, heavy=True)]
    assert seen == [2] * WINDOW  # a short build never runs its big model on one thread
    waiting = [torch.get_num_threads()
               for _ in paced(_produced(3 * WINDOW, 0.004), most=2, heavy=True)]
    assert waiting[:WINDOW] == [2] * WINDOW and waiting[-1] == 1


def test_a_model_thread_kept_off_the_cores_never_tries_more_threads():
    """Busy cores: the model does not wait for batches, but its thread is descheduled (here:
    sleeps, which its CPU clock does not count); a second thread would only spin."""
    assert _threads_seen(range(6 * WINDOW), lambda n: 0.004, time.thread_time) == \
        [1] * (6 * WINDOW)
