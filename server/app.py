"""Server start-up and shutdown: gRPC server, health, reflection, threads, signals.

The port opens first with health NOT_SERVING; the index and model load; health
turns SERVING. On SIGTERM/SIGINT health turns NOT_SERVING, in-flight calls get
a grace period, and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from types import FrameType
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from visearch.v1 import search_pb2, search_pb2_grpc

from common.errors import VisearchError
from common.machine import usable_cores
from index.store.atomic import write_bytes_atomic
from server.admission import large_buffers_from_the_os
from server.auth import AuthPolicy, auth_policy
from server.callpath import CallInterceptor
from server.config import ServerConfig, message_options
from server.feedback.api import FeedbackRecorder
from server.follow import chain_sighup
from server.live import LiveIndex, start_live
from server.metrics import MetricsEndpoint, Monitoring
from server.service import load_service
from server.servicer import VisualSearchServicer
from server.thumbs import ThumbnailCache
from server.transport import bind, check_listen, describe

if TYPE_CHECKING:
    from server.web.config import WebConfig

log = logging.getLogger("visearch.server")

# At shutdown, the port closes once no call has begun for this long (or at --grace).
SHUTDOWN_QUIET_SECONDS = 0.25
SERVICE_NAME = search_pb2.DESCRIPTOR.services_by_name["VisualSearch"].full_name


def runtime_report(embedder_device: str) -> str:
    """Which faiss build and which devices this process found (logged at start-up)."""
    import faiss
    import torch

    gpus = faiss.get_num_gpus()
    kind = f"GPU build, {gpus} GPU(s)" if hasattr(faiss, "StandardGpuResources") else "CPU build"
    device = embedder_device
    if device.startswith("cuda"):
        device += f" ({torch.cuda.get_device_name(torch.device(device))})"
    return (f"faiss {faiss.__version__} ({kind}); torch {torch.__version__}, "
            f"CUDA available: {torch.cuda.is_available()}; model on {device}")


def configure_threads(processes: int = 1) -> int:
    """The model gets every core inside one batched forward pass (its share of them when
    ``processes`` servers share the machine); faiss one core per call, since request
    threads already search in parallel. Nothing oversubscribes."""
    import faiss
    import torch

    cores = max(1, usable_cores() // processes)
    torch.set_num_threads(cores)
    faiss.omp_set_num_threads(1)
    return cores


def one_faiss_thread() -> None:
    """OpenMP's thread count is per calling thread: a thread OpenMP did not start (gRPC's
    RPC threads) begins at the process default (every core), whatever the loading thread
    set. Each RPC thread sets its own, so a search never spins a second core's worker."""
    import faiss

    global rpc_faiss_threads
    faiss.omp_set_num_threads(1)
    rpc_faiss_threads = faiss.omp_get_max_threads()


# What a faiss call in an RPC thread gets (the visearch_faiss_threads gauge); None until one
# RPC thread has started.
rpc_faiss_threads: int | None = None


class InFlight:
    """Counts calls queued or running, so shutdown waits for them and not for health watchers."""

    def __init__(self) -> None:
        self._count = 0
        self.started = 0  # calls ever begun: tells whether any arrived during a wait
        self._idle = threading.Condition()

    def begin(self) -> None:
        with self._idle:
            self._count += 1
            self.started += 1

    def end(self) -> None:
        with self._idle:
            self._count -= 1
            if self._count == 0:
                self._idle.notify_all()

    @property
    def count(self) -> int:
        return self._count

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)

    def wait_quiet(self, quiet: float, timeout: float) -> bool:
        """Idle, and no call begun for ``quiet`` seconds: what had already reached the
        port (gRPC may hold calls it has not yet handed to a thread) has been served."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.wait_idle(max(0.0, deadline - time.monotonic())):
                return False
            seen = self.started
            time.sleep(min(quiet, max(0.0, deadline - time.monotonic())))
            with self._idle:
                if self._count == 0 and self.started == seen:
                    return True
            if time.monotonic() >= deadline:
                return False


class TrackingExecutor(futures.ThreadPoolExecutor):
    """The RPC thread pool, counting every call from submission to completion."""

    def __init__(self, max_workers: int):
        super().__init__(max_workers=max_workers, thread_name_prefix="rpc",
                         initializer=one_faiss_thread)
        self.in_flight = InFlight()

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        self.in_flight.begin()  # counted while queued too: a queued call is in flight

        def tracked():  # type: ignore[no-untyped-def]
            try:
                return fn(*args, **kwargs)
            finally:
                self.in_flight.end()

        try:
            return super().submit(tracked)
        except BaseException:
            self.in_flight.end()
            raise


class SearchServer:
    """A running server; ``start`` binds the port, ``load`` makes it SERVING."""

    def __init__(self, config: ServerConfig):
        check_listen(config.host, config.security)  # refuse before anything binds or loads
        self.config = config
        self.auth = auth_policy(config.security)
        self.health = health.HealthServicer(experimental_non_blocking=True)
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.servicer = VisualSearchServicer()
        self.servicer.thumbs = ThumbnailCache(config.thumb_cache_dir, config.thumb_cache_bytes)
        self.servicer.process = (config.process_index, config.processes)
        self._executor = TrackingExecutor(config.rpc_threads)
        self.monitoring = Monitoring.for_server(
            config, lambda: self.servicer.service, lambda: self._executor.in_flight.count)
        if config.feedback is not None:
            self.servicer.feedback = FeedbackRecorder(config.feedback)
            self.monitoring.add_feedback(self.servicer.feedback)
        self._server = grpc.server(
            self._executor, interceptors=[CallInterceptor(
                metrics=self.monitoring.metrics, overload=self.monitoring.overload,
                auth=self.auth, feedback=self.servicer.feedback)],
            options=server_options(config.max_message_bytes, config.processes > 1),
            # Calls beyond the threads and the queue get RESOURCE_EXHAUSTED at once rather
            # than waiting behind a burst (admission control; clients retry with backoff).
            maximum_concurrent_rpcs=config.rpc_threads + config.max_queue)
        search_pb2_grpc.add_VisualSearchServicer_to_server(self.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server)
        self.port = 0
        self._stopped = threading.Event()
        self.live: LiveIndex | None = None  # follows CURRENT or writes (server.live)
        self.metrics_endpoint: MetricsEndpoint | None = None

    def start(self) -> int:
        self.port = bind(self._server, self.config.host, self.config.port, self.config.security,
                         shared=self.config.processes > 1)
        self.metrics_endpoint = self.monitoring.serve(self.config.host)
        self._server.start()
        log.info("listening on %s:%d, %s (NOT_SERVING until loaded)", self.config.host,
                 self.port, describe(self.config.security))
        return self.port

    def load(self) -> None:
        configure_threads(self.config.processes)
        from index.ann import faiss_index as ann
        from index.ann import gpu_serve

        gpu_serve.configure(self.config.gpus)
        if self.config.mmap and self.config.writable:
            raise VisearchError("--mmap serves a read-only index; a --writable server changes "
                                "its index in place")
        ann.set_serve_mmap(self.config.mmap)
        from index.store.directory import IndexDirectory

        if self.config.writable and \
                IndexDirectory(self.config.index_dir).manifest().build.get("ondisk"):
            raise VisearchError("this index's lists are on disk (index.ivfdata, `build "
                                "--ondisk`), shared by the versions that name them; a "
                                "--writable server changes its index in place: rebuild "
                                "without --ondisk to serve it writable")
        if self.config.shard_dirs:
            from server.multi import load_multi_service

            service = load_multi_service(self.config)
        else:
            service = load_service(self.config.index_dir, device=self.config.device,
                                   checkpoint=self.config.checkpoint, config=self.config.service)
        self.servicer.device = service.model.device if service.model else "none"
        log.info("%s", runtime_report(self.servicer.device))
        self.live = start_live(self.config, service)
        self.servicer.service = service
        self.monitoring.attach(service)
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        searcher = service.index.current
        m = searcher.manifest
        log.info("serving %s version %d: %d vectors, %s, model %s%s", self.config.index_dir,
                 m.version, searcher.ntotal, m.index.spec, m.model.name,
                 " (UNTRAINED)" if m.model.untrained else "")
        if self.config.port_file:
            write_bytes_atomic(self.config.port_file, f"{self.port}\n".encode())

    def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, a short drain, then in-flight calls get ``grace`` seconds.

        Health watch streams never end by themselves; they are cut once the search
        calls are done instead of holding shutdown for the whole grace period.
        """
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        time.sleep(self.config.drain_seconds)
        grace = self.config.grace_seconds if grace is None else grace
        deadline = time.monotonic() + grace
        # Closing the port cancels calls gRPC has received but not yet handed to a thread
        # (a burst of 100 lost a third that way): serve until quiet, then close.
        quiet = self._executor.in_flight.wait_quiet(SHUTDOWN_QUIET_SECONDS, grace)
        self._server.stop(max(0.0, deadline - time.monotonic()))  # no new calls from here on
        if not quiet or not self._executor.in_flight.wait_idle(
                max(0.0, deadline - time.monotonic())):
            log.warning("in-flight calls outlived the %.0f s grace period", grace)
        self._server.stop(0).wait()
        if self.live is not None:
            self.live.stop()
        if self.servicer.service is not None:
            self.servicer.service.close()
        self.monitoring.close()
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()
        if self.servicer.feedback is not None:
            self.servicer.feedback.close()
        log.info("stopped")

    def wait(self) -> None:
        self._server.wait_for_termination()


def server_options(max_message_bytes: int, shared_port: bool = False
                   ) -> list[tuple[str, int]]:
    """Message limits, and no SO_REUSEPORT: a second server on a taken port must fail, not
    silently share the port with the first; except for the processes of one
    ``--processes N`` server (server.processes), which share it on purpose."""
    return [*message_options(max_message_bytes), ("grpc.so_reuseport", int(shared_port))]


def reload_tokens_on_sighup(policy: AuthPolicy | None) -> Callable[[], None]:
    """SIGHUP re-reads the token files (rotation without a restart); returns the undo.

    Without token files SIGHUP keeps its default meaning."""
    if policy is None or not hasattr(signal, "SIGHUP"):
        return lambda: None

    def on_sighup(_signum: int, _frame: FrameType | None) -> None:
        log.info("SIGHUP: reloading token files")
        policy.reload()

    previous = signal.signal(signal.SIGHUP, on_sighup)

    def restore() -> None:
        signal.signal(signal.SIGHUP, previous)

    return restore


def serve(config: ServerConfig, http: WebConfig | None = None) -> int:
    """Run until SIGTERM or SIGINT; 0 after a graceful stop. With ``http``, the web page
    and JSON API run in a thread too (server/web), stopped first at shutdown."""
    if config.cpus:  # before gRPC and the model start threads (server.affinity)
        from server.affinity import pin_process

        pin_process(config.cpus)
    if not large_buffers_from_the_os():
        log.info("large buffers stay with glibc's adaptive mmap threshold (no mallopt here)")
    server = SearchServer(config)
    server.start()
    web = None
    if http is not None:
        from server.web.embedded import start_embedded_web

        try:
            web = start_embedded_web(http, config, server.port)
        except BaseException:
            server.stop(grace=0)
            raise
    stopping = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: shutting down (grace %.0f s)", signal.Signals(signum).name,
                 config.grace_seconds)
        stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    restore_sighup = reload_tokens_on_sighup(server.auth)
    restore_follow = chain_sighup(lambda: server.live.check_now() if server.live else None)
    try:
        try:
            server.load()
        except BaseException:
            server.stop(grace=0)
            raise
        while not stopping.wait(0.2):
            pass
        if web is not None:
            web.stop()
        server.stop()
    finally:
        if web is not None:
            web.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        restore_follow()
        restore_sighup()
    return 0

