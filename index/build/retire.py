"""Taking images out of the index: which catalog rows a request names, which indexed files
have vanished from disk, and the delete command's transaction + publish.

Retired ids are marked deleted in the catalog (one transaction) and the next published
version is the previous trained index with ``remove_ids``: no retraining, no re-embedding.
Ids are never reused; the raw vectors stay in the shards until ``compact``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from common.errors import VisearchError
from index.build.publish import IndexingOptions, IndexingResult, publish_index
from index.build.sources import under
from index.store.catalog import Catalog
from index.store.contract import stored_identity
from index.store.directory import IndexDirectory


class NothingMatchedError(VisearchError):
    """None of the paths or ids given names a live image."""


@dataclass
class Matches:
    """Live (id, path) rows a request names, and the names that matched nothing."""

    rows: list[tuple[int, str]] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        return [i for i, _ in self.rows]


def match(catalog: Catalog, paths: Sequence[str] = (), ids: Sequence[int] = ()) -> Matches:
    """Paths (files, or directories: everything indexed under them) and ids -> live rows."""
    out = Matches()
    live = catalog.live_rows()
    by_path = {p: i for i, p in live}
    seen: set[int] = set()

    def take(row_id: int, path: str) -> None:
        if row_id not in seen:
            seen.add(row_id)
            out.rows.append((row_id, path))

    for raw in paths:
        path = os.path.abspath(raw)
        if path in by_path:
            take(by_path[path], path)
            continue
        inside = [(i, p) for i, p in live if under(p, [path])]
        if not inside and raw in by_path:  # a key that is not a file path
            inside = [(by_path[raw], raw)]
        for row in inside:
            take(*row)
        if not inside:
            out.unknown.append(raw)
    live_ids = set(catalog.live_among(ids))
    path_of = catalog.paths([i for i in ids if i in live_ids])
    for row_id in ids:
        if int(row_id) in live_ids:
            take(int(row_id), path_of.get(int(row_id), ""))
        else:
            out.unknown.append(f"id {row_id}")
    return out


def vanished(catalog: Catalog, roots: Sequence[str], listed: set[str]) -> list[tuple[int, str]]:
    """Live rows under ``roots`` whose file no longer exists (the listing did not see it and
    it is not on disk now)."""
    return [(i, p) for i, p in catalog.live_rows()
            if p not in listed and under(p, roots) and not os.path.lexists(p)]


@dataclass
class DeleteReport:
    removed: list[tuple[int, str]]
    unknown: list[str]
    indexing: IndexingResult


def delete_images(directory: IndexDirectory, paths: Sequence[str] = (),
                  ids: Sequence[int] = (),
                  options: IndexingOptions = IndexingOptions()) -> DeleteReport:
    """Retire the named images and publish a version without them.

    Raises:
        NothingMatchedError: no path or id named a live image (nothing is published).
        IndexDirectoryError: not an index, or another writer holds the directory.
    """
    with directory.writing(published=True) as catalog:
        found = match(catalog, paths, ids)
        if not found.rows:
            raise NothingMatchedError(
                f"nothing to delete: none of {', '.join(found.unknown[:5])}"
                f"{' ...' if len(found.unknown) > 5 else ''} is in the index")
        identity = stored_identity(catalog)
        assert identity is not None  # a published index has a recorded model
        run_id = catalog.start_run()
        catalog.retire(found.ids, run_id)
        result = publish_index(directory, catalog, identity,
                               replace(options, keep_spec=True), run_id)
        catalog.finish_run(run_id, "done", embedded=0, reused=0, failed=0)
    return DeleteReport(found.rows, found.unknown, result)
