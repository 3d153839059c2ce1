"""`visearch serve --processes N`: refusals, and a real two-process server on 127.0.0.1
(untrained tiny model) answering several connections, stopped by SIGTERM or by losing
a child."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from visearch.v1 import search_pb2, search_pb2_grpc

from server.client import vector_request
from server.config import ServerConfig
from server.processes import ProcessesError, check_processes, child_configs, reserve_port
from server.transport import PortInUseError
from tests.conftest import ROOT, cli_env


def test_refuses_a_writer_and_the_embedded_page_and_checks_the_port(tmp_path):
    config = ServerConfig(index_dir=tmp_path)
    check_processes(config, 1, http=True)  # one process: anything goes
    with pytest.raises(ProcessesError, match="one writer"):
        check_processes(ServerConfig(index_dir=tmp_path, writable=True), 2, http=False)
    with pytest.raises(ProcessesError, match="visearch web"):
        check_processes(config, 2, http=True)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(PortInUseError, match="in use"):
            reserve_port("127.0.0.1", taken.getsockname()[1])
    port, holder = reserve_port("127.0.0.1", 0)
    assert holder is not None and port > 0
    holder.close()


def test_each_child_gets_the_port_its_own_ready_file_and_metrics_port(tmp_path):
    config = ServerConfig(index_dir=tmp_path, port=0, metrics_port=9100)
    kids = child_configs(config, 3, 5555, tmp_path)
    assert [(c.port, c.process_index, c.processes, c.metrics_port) for c in kids] == [
        (5555, 0, 3, 9100), (5555, 1, 3, 9101), (5555, 2, 3, 9102)]
    assert len({c.port_file for c in kids}) == 3
    assert [c.metrics_port for c in child_configs(
        ServerConfig(index_dir=tmp_path, metrics_port=0), 2, 1, tmp_path)] == [0, 0]
    assert child_configs(ServerConfig(index_dir=tmp_path), 2, 1, tmp_path)[1].metrics_port \
        is None


def _start(index_dir: Path, tmp_path: Path) -> tuple[subprocess.Popen, int, Path]:
    port_file, log = tmp_path / "port", tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", str(index_dir), "--processes", "2",
         "--port", "0", "--port-file", str(port_file), "--device", "cpu", "--grace", "5"],
        cwd=ROOT, env=cli_env(), stderr=log.open("w"))
    deadline = time.monotonic() + 180
    while not port_file.exists():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "never ready"
        time.sleep(0.1)
    return proc, int(port_file.read_text()), log


def _who_answers(port: int, most: int = 40) -> dict[int, int]:
    """process index -> pid, from new TCP connections (each also answering a search) until
    both processes answered or ``most`` connections were made (all on one process by
    chance: 2**-39)."""
    seen: dict[int, int] = {}
    for _ in range(most):
        if len(seen) == 2:
            break
        # A channel of its own (no shared subchannel): a connection of its own.
        with grpc.insecure_channel(f"127.0.0.1:{port}",
                                   options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            stub = search_pb2_grpc.VisualSearchStub(channel)
            info = stub.Info(search_pb2.InfoRequest(), timeout=30)
            hits = stub.Search(vector_request(np.ones(info.dim), k=3), timeout=30).hits
            assert len(hits) == 3 and info.processes == 2
            seen[info.process_index] = info.pid
    return seen


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_two_processes_serve_one_port_and_sigterm_stops_both(index_dir, tmp_path):
    proc, port, log = _start(index_dir, tmp_path)
    try:
        seen = _who_answers(port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert sorted(seen) == [0, 1] and len(set(seen.values())) == 2
    assert all(_gone(pid) for pid in seen.values())
    text = log.read_text()
    assert text.count("ready: 2 processes serving") == 1 and "stopped 2 processes" in text


@pytest.mark.slow
def test_a_child_that_dies_stops_the_server_with_exit_1(index_dir, tmp_path):
    proc, port, log = _start(index_dir, tmp_path)
    try:
        seen = _who_answers(port)
        os.kill(seen[1], signal.SIGKILL)
        assert proc.wait(timeout=60) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _gone(seen[0])
    assert f"server process 1 (pid {seen[1]}) exited with signal SIGKILL" in log.read_text()
