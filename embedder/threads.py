"""The model's torch threads while decode workers share the CPU cores with it.

On the CPU the decode workers and the model's intra-op threads compete for the same
cores. When decoding is the bottleneck (a small model), a second model thread only
steals a core from a worker, and on a loaded machine an OpenMP team whose threads are
descheduled waits at every barrier: the untrained tiny model's build ran at 110
images/s with 2 threads against 920 with 1 on 2 shared cores. When the model is the
bottleneck (ViT-B-32 on the CPU), the workers sleep on a full queue and the model
wants every core. Neither choice is right for every model and machine, so this tries
both on the running build and keeps the faster one, trying again now and then.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

import torch

Batch = TypeVar("Batch")

PROBE_BATCHES = 3  # batches timed with each thread count
KEEP_BATCHES = 40  # batches run with the faster one before trying again


def paced(batches: Iterable[Batch], most: int | None = None) -> Iterator[Batch]:
    """Yield ``batches`` while choosing this process's torch threads between 1 and ``most``
    (default: the current setting) by measured batches/s (all but the last batch are the
    same size); the setting is restored after."""
    before = torch.get_num_threads()
    most = before if most is None else most
    if most <= 1:
        yield from batches
        return
    choices = (1, most)
    rates: dict[int, float] = {}
    current, left, measuring = 1, 1, False  # the first batch warms up, untimed
    done, started = 0, time.perf_counter()
    torch.set_num_threads(current)
    try:
        for batch in batches:
            yield batch  # the consumer encodes it with ``current`` threads
            done += 1
            left -= 1
            if left > 0:
                continue
            if measuring:
                rates[current] = done / max(time.perf_counter() - started, 1e-9)
            untried = [c for c in choices if c not in rates]
            if untried:
                current, left, measuring = untried[0], PROBE_BATCHES, True
            else:
                current, left, measuring = max(rates, key=rates.__getitem__), KEEP_BATCHES, False
                rates = {}
            torch.set_num_threads(current)
            done, started = 0, time.perf_counter()
    finally:
        torch.set_num_threads(before)
