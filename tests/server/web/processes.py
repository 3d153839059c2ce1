"""`visearch serve --http-port` and `visearch web` as real processes, for the end-to-end tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.conftest import ROOT, cli_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited {process.returncode}: {process.communicate()[1]}")
        try:
            if httpx.get(url + "readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {timeout} s")


@contextmanager
def visearch_process(*args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Run `visearch ARGS --... HTTP port`; yields the page URL once /readyz says 200.
    SIGTERM at the end must stop it with exit status 0."""
    port = free_port()
    http = ["--http-port", str(port)] if args[0] == "serve" else ["--port", str(port)]
    process = subprocess.Popen([sys.executable, "-m", "cli.main", *args, *http], cwd=ROOT,
                               env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_ready(url, process)
        yield url, process
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
