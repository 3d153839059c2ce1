"""`visearch serve --cpus LIST` (server.affinity): parsing, refusals, the share of each of
``--processes N``, and a real server (untrained tiny model) whose every thread stays on
the core it was given while it answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from visearch.v1 import search_pb2, search_pb2_grpc

from server.affinity import CpuSetError, check_cpus, parse_cpus, share
from server.client import vector_request
from server.config import ServerConfig
from server.processes import child_configs
from tests.conftest import ROOT, cli_env

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")


def test_parses_cores_and_ranges_and_refuses_the_rest():
    assert parse_cpus("1") == (1,)
    assert parse_cpus("3,0-1, 1") == (0, 1, 3)
    for bad in ("", "a", "3-1", "-1", "1-"):
        with pytest.raises(CpuSetError, match="core numbers and ranges"):
            parse_cpus(bad)


def test_refuses_cores_not_usable_and_too_few_for_the_processes():
    usable = tuple(sorted(os.sched_getaffinity(0)))
    check_cpus(usable[:1])
    with pytest.raises(CpuSetError, match=rf"cores \[{max(usable) + 1000}\]"):
        check_cpus((max(usable) + 1000,))
    with pytest.raises(CpuSetError, match="1 core\\(s\\) to 2 processes"):
        check_cpus(usable[:1], processes=2)


def test_each_process_gets_cores_of_its_own(tmp_path):
    assert [share((0, 1, 2, 3, 4), i, 2) for i in range(2)] == [(0, 2, 4), (1, 3)]
    kids = child_configs(ServerConfig(index_dir=tmp_path, cpus=(4, 5, 6)), 3, 1, tmp_path)
    assert [c.cpus for c in kids] == [(4,), (5,), (6,)]
    assert [c.cpus for c in child_configs(ServerConfig(index_dir=tmp_path), 2, 1,
                                          tmp_path)] == [(), ()]


def _allowed(pid: int) -> set[str]:
    """Cpus_allowed_list of every thread of ``pid``."""
    found = set()
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                found.add(line.split(":", 1)[1].strip())
    return found


@pytest.mark.slow
def test_a_pinned_server_keeps_every_thread_on_its_core(index_dir, tmp_path):
    core = max(os.sched_getaffinity(0))
    port_file, log = tmp_path / "port", tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", str(index_dir), "--cpus", str(core),
         "--port", "0", "--port-file", str(port_file), "--device", "cpu", "--grace", "5"],
        cwd=ROOT, env=cli_env(), stderr=log.open("w"))
    try:
        deadline = time.monotonic() + 180
        while not port_file.exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.1)
        with grpc.insecure_channel(f"127.0.0.1:{int(port_file.read_text())}") as channel:
            stub = search_pb2_grpc.VisualSearchStub(channel)
            info = stub.Info(search_pb2.InfoRequest(), timeout=30)
            assert len(stub.Search(vector_request(np.ones(info.dim), k=3), timeout=30).hits) == 3
        assert info.pid == proc.pid
        assert len(list(Path(f"/proc/{proc.pid}/task").iterdir())) > 1
        assert _allowed(proc.pid) == {str(core)}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
