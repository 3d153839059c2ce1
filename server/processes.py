"""`visearch serve --processes N`: N read-only servers on one port, each with its own GIL.

One server process is bound by the GIL passing between gRPC's polling thread and its
workers, not by Python work (docs/measurements.md); N processes give N GILs. Each
child is a whole `visearch serve` (server.app): it binds the same port with
SO_REUSEPORT, so the kernel spreads *connections* over the children (a client
keeps its connection, hence its process), loads the index and the model into its own
memory (N times the RAM, unless --mmap lets the page cache share the index), and
follows CURRENT by itself, so a hot swap reaches each child within --follow-seconds.

The parent loads nothing. It checks the port, starts the children, logs one ready
line once all of them serve (and only then writes --port-file), forwards SIGTERM,
SIGINT and SIGHUP to them, and supervises: a child that exits while the others
serve is reported, the others are stopped gracefully and the server exits 1. It
does not restart children in place: a restart loop would hide a crash that recurs,
and the one who started the server (systemd, Kubernetes, a shell) restarts it
whole, as it would a single-process server.

Metrics are per process: with --metrics-port P child i serves its own registry at
P + i (P = 0: a free port each, logged); scrape each and sum, counters are not
shared. A --feedback-log is shared: every child appends whole lines to one file
(server.feedback.log).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from common.errors import VisearchError
from index.store.atomic import write_bytes_atomic
from server.config import ServerConfig
from server.transport import PortInUseError, port_in_use

log = logging.getLogger("visearch.server")

EXTRA_STOP_SECONDS = 30.0  # beyond drain + grace, before a child that will not stop is killed


class ProcessesError(VisearchError):
    """Settings that several server processes cannot honour."""


def check_processes(config: ServerConfig, processes: int, http: bool) -> None:
    """Refuse what N processes cannot do, before anything starts."""
    if processes < 1:
        raise ProcessesError("--processes needs at least 1")
    if processes == 1:
        return
    if config.writable:
        raise ProcessesError(
            "--writable serves with one writer: it holds the directory's build lock and "
            "appends to one write-ahead shard, which a second process cannot share. Run one "
            "--writable server, and read-only `--processes N` servers beside it if needed "
            "(they follow the versions it publishes)")
    if http:
        raise ProcessesError("--http-port runs in one server process; with --processes run "
                             "the page as its own command: `visearch web --server HOST:PORT`")


def child_configs(config: ServerConfig, processes: int, port: int, folder: Path
                  ) -> list[ServerConfig]:
    """Child i: the shared port, its own port file (readiness), its own metrics port."""
    def metrics_port(i: int) -> int | None:
        if config.metrics_port is None:
            return None
        return 0 if config.metrics_port == 0 else config.metrics_port + i

    from server.affinity import share

    return [replace(config, port=port, port_file=folder / f"ready-{i}", process_index=i,
                    processes=processes, metrics_port=metrics_port(i),
                    cpus=share(config.cpus, i, processes))
            for i in range(processes)]


def reserve_port(host: str, port: int) -> tuple[int, socket.socket | None]:
    """The port the children share. A fixed port must be free (no SO_REUSEPORT, so another
    server there, even one of N processes, makes this fail); port 0 picks a free one and
    holds it with an SO_REUSEPORT socket that never listens until the children bound it."""
    bare = host.strip("[]")
    if port:
        if port_in_use(host, port):
            raise PortInUseError(f"port {port} is in use on {host} (another visearch serve?); "
                                 f"stop it or choose another --port (0 picks a free one)")
        return port, None
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((bare, 0))
    return holder.getsockname()[1], holder


def run_child(config: ServerConfig, verbose: bool, log_format: str) -> None:
    """A child's whole life: `visearch serve` for one process (spawned, not forked)."""
    _die_with_parent()
    from cli.main import configure_logging
    from server.app import serve

    configure_logging(verbose, log_format)
    try:
        code = serve(config)
    except VisearchError as exc:
        log.error("process %d: %s", config.process_index, exc)
        code = 1
    sys.exit(code)


def _die_with_parent() -> None:
    """Linux: SIGTERM when the parent dies (even by SIGKILL), so no child serves on alone."""
    libc_name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and libc_name:
        ctypes.CDLL(libc_name).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Supervisor:
    """The parent of the children of one server."""

    def __init__(self, config: ServerConfig, processes: int, verbose: bool = False,
                 log_format: str = "text"):
        self.config = config
        self.processes = processes
        self.verbose = verbose
        self.log_format = log_format
        self.stopping = threading.Event()
        self.children: list[Any] = []  # multiprocessing.Process (spawn context)
        self.ready = False  # every child serves (and has its own SIGHUP handler)

    def forward(self, signum: int) -> None:
        for child in self.children:
            if child.pid is not None and child.exitcode is None:
                try:
                    os.kill(child.pid, signum)
                except ProcessLookupError:
                    pass

    def run(self) -> int:
        port, holder = reserve_port(self.config.host, self.config.port)
        context = multiprocessing.get_context("spawn")
        with tempfile.TemporaryDirectory(prefix="visearch-serve-") as folder:
            configs = child_configs(self.config, self.processes, port, Path(folder))
            self.children = [context.Process(target=run_child, name=f"serve-{c.process_index}",
                                             args=(c, self.verbose, self.log_format))
                             for c in configs]
            try:
                for child in self.children:
                    child.start()
                ready = self._wait_ready(configs)
            finally:
                if holder is not None:
                    holder.close()
            if ready:
                code = self._supervise()
            else:  # a child died while loading, or we were told to stop
                code = 0 if self.stopping.is_set() else 1
            return self._stop(code)

    def _wait_ready(self, configs: list[ServerConfig]) -> bool:
        """True once every child serves; False when one died first or a signal came."""
        while not self.stopping.is_set():
            if self._dead():
                return False
            if all(c.port_file is not None and c.port_file.exists() for c in configs):
                break
            time.sleep(0.1)
        else:
            return False
        if self.config.port_file:
            write_bytes_atomic(self.config.port_file, f"{configs[0].port}\n".encode())
        self.ready = True
        log.info("ready: %d processes serving %s on %s:%d (pids %s)", self.processes,
                 self.config.index_dir, self.config.host, configs[0].port,
                 ", ".join(str(c.pid) for c in self.children))
        return True

    def _dead(self) -> bool:
        """Report a child that exited on its own; True if there is one."""
        for i, child in enumerate(self.children):
            if child.exitcode is not None and not self.stopping.is_set():
                how = f"signal {signal.Signals(-child.exitcode).name}" \
                    if child.exitcode < 0 else f"code {child.exitcode}"
                log.error("server process %d (pid %d) exited with %s: stopping the other "
                          "%d and exiting 1 (restart the server)", i, child.pid, how,
                          self.processes - 1)
                return True
        return False

    def _supervise(self) -> int:
        sentinels = [child.sentinel for child in self.children]
        while not self.stopping.is_set():
            multiprocessing.connection.wait(sentinels, timeout=0.2)
            if self._dead():
                return 1
        return 0

    def _stop(self, code: int) -> int:
        """SIGTERM to every child still running (a graceful stop each), then wait."""
        self.forward(signal.SIGTERM)
        deadline = time.monotonic() + self.config.drain_seconds + \
            self.config.grace_seconds + EXTRA_STOP_SECONDS
        for child in self.children:
            child.join(max(0.0, deadline - time.monotonic()))
            if child.exitcode is None:
                log.error("server process %s (pid %d) did not stop: killed", child.name,
                          child.pid)
                child.kill()
                child.join()
                code = 1
            elif child.exitcode != 0 and code == 0:
                code = 1
        log.info("stopped %d processes", len(self.children))
        return code


def serve_processes(config: ServerConfig, processes: int, verbose: bool = False,
                    log_format: str = "text") -> int:
    """Run N children until SIGTERM or SIGINT (exit 0) or until one dies (exit 1)."""
    check_processes(config, processes, http=False)
    supervisor = Supervisor(config, processes, verbose, log_format)

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping %d server processes", signal.Signals(signum).name, processes)
        supervisor.stopping.set()
        supervisor.forward(signum)

    def on_hup(signum: int, _frame: FrameType | None) -> None:
        if supervisor.ready:  # token files and CURRENT, in every child
            supervisor.forward(signum)

    handlers = {signal.SIGTERM: on_stop, signal.SIGINT: on_stop, signal.SIGHUP: on_hup}
    previous = {s: signal.signal(s, h) for s, h in handlers.items()}
    try:
        return supervisor.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
