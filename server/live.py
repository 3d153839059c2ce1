"""What keeps a running server's index current: a follower of CURRENT (read-only servers)
or the online writer (``--writable``). server.app starts one after loading and stops it
before closing the service."""

from __future__ import annotations

from typing import Protocol

from index.store.directory import IndexDirectory
from server.config import ServerConfig
from server.service import SearchService


class LiveIndex(Protocol):
    def check_now(self) -> None:
        """Look at the directory at once (SIGHUP)."""

    def stop(self) -> None:
        """Stop following or writing; a writer publishes what it holds first."""


def start_live(config: ServerConfig, service: SearchService) -> LiveIndex:
    """A writer for ``--writable``, else a follower of CURRENT (polling, and on SIGHUP)."""
    if config.shard_dirs:
        from server.multi import MultiFollower

        return MultiFollower(config, service)
    directory = IndexDirectory(config.index_dir)
    served = service.model.embedder.identity if service.model else \
        service.index.current.manifest.model
    if config.writable:
        from server.writer import start_writer

        return start_writer(directory, service, config)
    from server.follow import VersionFollower

    interval = config.follow_seconds if config.follow_seconds > 0 else None  # SIGHUP only
    return VersionFollower(directory, service.index, served, interval).start()
