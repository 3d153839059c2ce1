"""Facts about this machine that the server, evaluation and benchmarks report or size by."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def describe_machine() -> dict[str, object]:
    """CPU, cores, GPUs and library versions, recorded beside every measured number."""
    import faiss

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [ln.split(":", 1)[1].strip() for ln in handle if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"cpu": cpu, "cores": usable_cores(), "gpu": gpu_names(),
            "faiss_gpus": faiss.get_num_gpus(), "faiss": faiss.__version__,
            "python": platform.python_version()}


def gpu_names() -> str:
    """Without importing torch (seconds): nvidia-smi when the driver is there."""
    if not shutil.which("nvidia-smi"):
        return "none"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return ", ".join(line.strip() for line in out.splitlines() if line.strip()) or "none"
