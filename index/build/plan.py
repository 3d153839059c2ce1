"""The build's dedup policy, in one place: which listed files must be read, and what to do
with each file once its bytes are hashed.

* same path, size and mtime as a stored row: skipped without reading (``plan``);
* same path and same bytes (touched or copied back): kept under its id (``decide``);
* bytes already stored under another path, or earlier in the batch: the vector is reused;
* anything else is embedded; a file with new bytes at a known path gets a new id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from index.store.catalog import Catalog, ImageRecord


@dataclass(frozen=True)
class Plan:
    """Which listed files need work, and the catalog rows of those already present."""

    todo: list[ImageRecord]
    present: dict[str, ImageRecord]
    skipped: int


def plan(files: Sequence[ImageRecord], catalog: Catalog) -> Plan:
    """Files whose path, size and mtime match a stored row are skipped without reading."""
    present = catalog.live_by_path(f.path for f in files)
    todo = []
    for f in files:
        row = present.get(f.path)
        if row is None or (row.size, row.mtime_ns) != (f.size, f.mtime_ns):
            todo.append(f)
    return Plan(todo, present, len(files) - len(todo))


@dataclass
class Decisions:
    """What to do with the decoded files of one batch.

    Attributes:
        keep: unchanged files (same path, same bytes) with their stored id.
        embed: rows of the batch to run through the model (the first of each new content).
        store: in input order, each file to store with its vector's source: a row of
            ``embed`` or a vector stored earlier.
    """

    keep: list[ImageRecord] = field(default_factory=list)
    embed: list[int] = field(default_factory=list)
    store: list[tuple[ImageRecord, int | np.ndarray]] = field(default_factory=list)

    @property
    def reused(self) -> int:
        return len(self.store) - len(self.embed)


def decide(records: Sequence[ImageRecord], present: dict[str, ImageRecord],
           stored_vector: Callable[[str], np.ndarray | None]) -> Decisions:
    """Apply the policy to hashed ``records`` (row i is the batch's row i)."""
    out = Decisions()
    first_row: dict[str, int] = {}  # sha256 -> row embedded in this batch
    for row, record in enumerate(records):
        old = present.get(record.path)
        if old is not None and old.sha256 == record.sha256:
            out.keep.append(replace(record, id=old.id))
        elif record.sha256 in first_row:
            out.store.append((record, first_row[record.sha256]))
        else:
            vector = stored_vector(record.sha256)
            if vector is None:
                first_row[record.sha256] = row
                out.embed.append(row)
                out.store.append((record, row))
            else:
                out.store.append((record, vector))
    return out
