"""The model's torch threads while decode workers share the CPU cores with it.

On the CPU the decode workers and the model's intra-op threads compete for the same
cores. When decoding is the bottleneck (a small model), a second model thread only
steals a core from a worker, and on a loaded machine an OpenMP team whose threads are
descheduled spins at every barrier: the untrained tiny model's build ran at 110
images/s with 2 threads against 920 with 1 on 2 shared cores, and even a few batches
with 2 threads cost more CPU than the rest of the build's main process. When the model
is the bottleneck (ViT-B-32 on the CPU), the workers sleep on a full queue and the
model wants every core.

So a small model starts with one thread; a large one (over ``HEAVY_PARAMS`` parameters
in its image tower: a forward pass costs tens of decodes, so it is the bottleneck from
the first batch) starts with ``most``, and a short build never runs on one thread while
the workers idle (ViT-B-32 ran at 0.49 of its bare encode loop on 3 batches, all on
one thread, before this). Only while it is the bottleneck (the main process
hardly ever waits for a decoded batch) does it try ``most`` threads for one window of
batches, and keeps them only if that window ran clearly faster; a failed try waits
twice as long before the next. Kept threads go back to one when the model waits again.

Not waiting is not enough: on a machine whose cores are all busy (other processes,
or the workers themselves) the model's thread is runnable but descheduled much of the
time, which also looks like "the model is slow", and there a second OpenMP thread
only spins at barriers (the build's main process burnt 0.27-1.6 ms of CPU per image
instead of 0.17 in such runs, docs/measurements.md section 5). So a try also needs
the model's thread to have been on a core for ``RUNNING`` of the time it did not wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import torch

Batch = TypeVar("Batch")

WINDOW = 4  # batches between decisions
MODEL_BOUND = 0.1  # waiting less than this share of the time: the model is the bottleneck
DECODE_BOUND = 0.3  # waiting more than this share of the time: decoding is
GAIN = 1.15  # more threads are kept when their window is this much faster
HEAVY_PARAMS = 10_000_000  # image towers above this start with every thread (ViT-B-32: 88M)
RUNNING = 0.7  # on a core at least this share of the time it did not wait, to try more


def paced(batches: Iterable[Batch], most: int | None = None, heavy: bool = False,
          cpu_clock: Callable[[], float] = time.thread_time) -> Iterator[Batch]:
    """Yield ``batches``, choosing this process's torch threads (1 or ``most``, default:
    the current setting) as above, starting from ``most`` for a ``heavy`` model; the
    setting is restored after. ``cpu_clock`` is this thread's CPU time."""
    before = torch.get_num_threads()
    most = before if most is None else most
    if most <= 1:
        yield from batches
        return
    pace = _Pace(most, heavy, cpu_clock)
    torch.set_num_threads(pace.threads)
    iterator = iter(batches)
    try:
        while True:
            asked = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            pace.waited += time.perf_counter() - asked
            yield batch
            if pace.batch_done():
                torch.set_num_threads(pace.threads)
    finally:
        torch.set_num_threads(before)


class _Pace:
    """The decision above, one window of batches at a time."""

    def __init__(self, most: int, heavy: bool = False,
                 cpu_clock: Callable[[], float] = time.thread_time):
        self.most = most
        self.cpu_clock = cpu_clock
        self.window_cpu = cpu_clock()
        self.threads = most if heavy else 1
        self.waited = 0.0
        self.batches = 0
        self.window_start = time.perf_counter()
        self.one_thread_rate = 0.0
        self.probing = False
        self.next_probe = 1  # window number
        self.backoff = 2
        self.windows = 0

    def batch_done(self) -> bool:
        """Count a batch; at the end of a window decide, True when ``threads`` changed."""
        self.batches += 1
        if self.batches % WINDOW:
            return False
        now = time.perf_counter()
        elapsed = max(now - self.window_start, 1e-9)
        rate, share = WINDOW / elapsed, self.waited / elapsed
        cpu = self.cpu_clock()
        running = (cpu - self.window_cpu) / max(elapsed - self.waited, 1e-9)
        self.windows += 1
        self.waited, self.window_start, self.window_cpu = 0.0, now, cpu
        before = self.threads
        if self.threads == 1:
            self.one_thread_rate = rate
            if share < MODEL_BOUND and running >= RUNNING and self.windows >= self.next_probe:
                self.threads, self.probing = self.most, True
        elif self.probing:
            self.probing = False
            if rate < GAIN * self.one_thread_rate:
                self.threads = 1
                self.next_probe = self.windows + self.backoff
                self.backoff *= 2
        elif share > DECODE_BOUND:
            self.threads = 1
        return self.threads != before
