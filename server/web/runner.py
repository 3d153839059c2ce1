"""Running the HTTP side with uvicorn: in the foreground (`visearch web`) or in a thread
beside the gRPC server (`visearch serve --http-port`)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType

from common.errors import VisearchError
from server.client import SearchClient
from server.security import ChannelSecurity
from server.web.config import WebConfig, check_web_exposure

log = logging.getLogger("visearch.web")


class WebStartError(VisearchError):
    """uvicorn did not start listening (port taken, bad certificate)."""


def uvicorn_server(config: WebConfig, client: SearchClient) -> object:
    import uvicorn

    class Server(uvicorn.Server):
        """Signals are ours: uvicorn would re-raise SIGTERM after its graceful stop, and the
        process would then exit by the signal instead of with status 0."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    from server.web.app import create_app

    check_web_exposure(config)
    ssl = {}
    if config.tls_cert is not None:
        ssl = {"ssl_certfile": str(config.tls_cert), "ssl_keyfile": str(config.tls_key)}
    settings = uvicorn.Config(create_app(client, config), host=config.host, port=config.port,
                              log_level="warning", access_log=False, server_header=False,
                              **ssl)  # type: ignore[arg-type]
    return Server(settings)


def _url(config: WebConfig, port: int) -> str:
    scheme = "https" if config.tls_cert else "http"
    host = f"[{config.host}]" if ":" in config.host else config.host
    return f"{scheme}://{host}:{port}/"


def run_web(config: WebConfig, target: str, security: ChannelSecurity) -> int:
    """Serve until SIGTERM or SIGINT (uvicorn's own handlers); 0 after a clean stop."""
    with SearchClient(target, timeout=config.request_timeout, security=security) as client:
        server = uvicorn_server(config, client)

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("%s: shutting down", signal.Signals(signum).name)
            server.should_exit = True  # type: ignore[attr-defined]

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        log.info("web page for %s on %s", target, _url(config, config.port))
        try:
            server.run()  # type: ignore[attr-defined]
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    if not server.started:  # type: ignore[attr-defined]
        raise WebStartError(f"the HTTP server could not start on {config.host}:{config.port}")
    return 0


class EmbeddedWeb:
    """uvicorn in a background thread of `visearch serve`, stopped with the gRPC server."""

    def __init__(self, config: WebConfig, target: str, security: ChannelSecurity):
        self.config = config
        self.client = SearchClient(target, timeout=config.request_timeout, security=security)
        try:
            self.server = uvicorn_server(config, self.client)
        except BaseException:
            self.client.close()
            raise
        self.thread = threading.Thread(target=self._run, name="http", daemon=True)
        self.port = 0

    def _run(self) -> None:
        try:
            self.server.run()  # type: ignore[attr-defined]
        except BaseException:  # noqa: BLE001 - reported by start() through server.started
            log.exception("the HTTP server stopped")

    def start(self, timeout: float = 30.0) -> int:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:  # type: ignore[attr-defined]
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.client.close()
                raise WebStartError(f"the HTTP server did not start on {self.config.host}:"
                                    f"{self.config.port}")
            time.sleep(0.02)
        sockets = self.server.servers[0].sockets  # type: ignore[attr-defined]
        self.port = int(sockets[0].getsockname()[1])
        log.info("web page on %s", _url(self.config, self.port))
        return self.port

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True  # type: ignore[attr-defined]
        self.thread.join(timeout)
        self.client.close()
