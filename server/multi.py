"""Serving several index directories behind one server (`visearch serve IDX1 IDX2 ...`).

The service answers over an ``index.ann.multi.MultiSearcher``: every shard searched
with the query's parameters, the hits merged into one top-k with namespaced ids. Each
shard follows its own CURRENT: a new version of one shard is loaded in the background
and a new MultiSearcher holding it is swapped in whole, so a request sees one set of
shard versions. Info lists the shards (``shards``: path, version, count, id base).
"""

from __future__ import annotations

import logging
import threading

from common.errors import VisearchError
from index.ann.multi import MultiSearcher, open_shards
from index.ann.search import Searcher
from index.store.contract import check_same_model, has_model
from index.store.directory import IndexDirectory
from server.config import ServerConfig
from server.runtime import IndexHandle, ModelSide, ServedVersion
from server.service import SearchService

log = logging.getLogger("visearch.server")


class MultiIndexHandle(IndexHandle):
    """The served MultiSearcher; shards are swapped one at a time through ``slot(i)``."""

    def __init__(self, searcher: MultiSearcher):
        super().__init__(searcher)  # type: ignore[arg-type]
        self.shard_lock = threading.Lock()  # one shard swap at a time: none is lost
        self.slots = [ShardSlot(self, i) for i in range(len(searcher.shards))]

    def info_fields(self) -> dict[str, object]:
        fields = super().info_fields()
        multi: MultiSearcher = self.current  # type: ignore[assignment]
        fields["shards"] = [{**info, "loaded_at": slot.loaded_at,
                             "refused_version": slot.refused_version or 0,
                             "refused_reason": slot.refused_reason}
                            for info, slot in zip(multi.shard_info(), self.slots, strict=True)]
        return fields


class ShardSlot(ServedVersion):
    """One shard of a MultiIndexHandle, shaped like an IndexHandle for VersionFollower."""

    def __init__(self, owner: MultiIndexHandle, shard: int):
        super().__init__()
        self.owner = owner
        self.shard = shard

    @property
    def current(self) -> Searcher:
        return self.owner.current.shards[self.shard]  # type: ignore[attr-defined, no-any-return]

    def swap(self, searcher: Searcher) -> Searcher:
        with self.owner.shard_lock:
            multi: MultiSearcher = self.owner.current  # type: ignore[assignment]
            previous = multi.shards[self.shard]
            self.owner.swap(multi.with_shard(self.shard, searcher))  # type: ignore[arg-type]
            self.swapped_in(searcher.manifest.version)
        return previous


def load_multi_service(config: ServerConfig) -> SearchService:
    """Open every shard's current version and the model they share (shard 0's manifest).

    Raises ShardModelMismatchError when shards differ in model, and what load_service
    raises for one index."""
    from embedder.embedder import load_embedder

    multi = open_shards(config.shard_dirs)
    handle = MultiIndexHandle(multi)
    recorded = multi.manifest.model
    if not has_model(recorded):
        return SearchService(handle, None, config.service)
    embedder = load_embedder(recorded.embedder_config(
        device=config.device, checkpoint=config.checkpoint, base_dir=config.shard_dirs[0]))
    check_same_model(recorded, embedder.identity)
    model = ModelSide(embedder, config.service.limits, batch_max=config.service.batch_max,
                      batch_wait_ms=config.service.batch_wait_ms)
    return SearchService(handle, model, config.service)


class MultiFollower:
    """A VersionFollower per shard (server.live.LiveIndex)."""

    def __init__(self, config: ServerConfig, service: SearchService):
        from server.follow import VersionFollower

        if config.writable:
            raise VisearchError("--writable serves one index directory, not several shards")
        handle = service.index
        assert isinstance(handle, MultiIndexHandle)
        served = service.model.embedder.identity if service.model else \
            handle.current.manifest.model
        interval = config.follow_seconds if config.follow_seconds > 0 else None
        self.followers = [
            VersionFollower(IndexDirectory(path), slot, served, interval)  # type: ignore[arg-type]
            for path, slot in zip(config.shard_dirs, handle.slots, strict=True)]
        for follower in self.followers:
            follower.start()

    def check_now(self) -> None:
        for follower in self.followers:
            follower.check_now()

    def stop(self) -> None:
        for follower in self.followers:
            follower.stop()
