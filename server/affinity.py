"""`visearch serve --cpus LIST`: keep a server's threads on the cores it is given.

A unary call in the sync gRPC server passes between gRPC's polling thread and an RPC
worker thread and back, each hand-off a futex wake-up; when the two run on different
cores, or where a client on the same machine just ran, the search runs on a cold core.
Measured on 2 cores (docs/measurements.md, section 3): the server-side service time of
an embedding query drops from in-process + 0.12 ms to in-process + 0.07 ms, and the
server spends ~10% less CPU per call, with the server kept on one core; on a machine
busy with other work the gain can vanish (a pinned thread cannot leave a taken core). The model's
batched forward pass gets only these cores too, so this is for servers that answer
mostly embedding queries, or for giving each of ``--processes N`` a core of its own.
"""

from __future__ import annotations

import os

from common.errors import VisearchError


class CpuSetError(VisearchError):
    """A --cpus value that names no usable core, or too few for the processes."""


def parse_cpus(text: str) -> tuple[int, ...]:
    """``"1"``, ``"0-3"``, ``"0,2-3"`` -> sorted distinct core numbers."""
    cores: set[int] = set()
    try:
        for part in text.split(","):
            low, dash, high = part.strip().partition("-")
            first, last = int(low), int(high if dash else low)
            if first < 0 or last < first:
                raise ValueError(part)
            cores.update(range(first, last + 1))
    except ValueError:
        raise CpuSetError(f"--cpus {text!r}: give core numbers and ranges, e.g. 1 or "
                          f"0-3 or 0,2-3") from None
    return tuple(sorted(cores))


def check_cpus(cpus: tuple[int, ...], processes: int = 1) -> None:
    """Every core usable by this process, and at least one per server process."""
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_setaffinity") else None
    if usable is None:
        raise CpuSetError("--cpus needs Linux (sched_setaffinity)")
    missing = sorted(set(cpus) - usable)
    if missing:
        raise CpuSetError(f"--cpus names cores {missing} this process may not use "
                          f"(usable: {sorted(usable)})")
    if len(cpus) < processes:
        raise CpuSetError(f"--cpus gives {len(cpus)} core(s) to {processes} processes; "
                          f"give at least one per process")


def share(cpus: tuple[int, ...], index: int, processes: int) -> tuple[int, ...]:
    """Process ``index`` of ``processes``: every ``processes``-th core, so each process
    keeps cores of its own."""
    return cpus[index::processes]


def pin_process(cpus: tuple[int, ...]) -> None:
    """Every thread of this process, and those it starts later, on ``cpus``.

    Linux keeps an affinity per thread and a new thread inherits its creator's, so the
    threads already running (gRPC's, the logging ones) are set one by one."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, FileNotFoundError):  # a thread that just ended
            continue
