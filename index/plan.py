"""Which listed files a build must read, and what the build did with them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from embedder.decode import ImageFile
from index.catalog import Catalog, CatalogRow


@dataclass
class IngestStats:
    embedded: int = 0  # ran through the model
    reused: int = 0  # same bytes already stored under another path: vector copied
    unchanged: int = 0  # listed again, same path and bytes: nothing to do
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def stored(self) -> int:
        return self.embedded + self.reused


@dataclass(frozen=True)
class Plan:
    """Which listed files need work, and the catalog rows of those already present."""

    todo: list[ImageFile]
    present: dict[str, CatalogRow]
    skipped: int


def plan(files: Sequence[ImageFile], catalog: Catalog) -> Plan:
    """Files whose path, size and mtime match a stored row are skipped without reading."""
    present = catalog.live_by_path(f.path for f in files)
    todo = []
    for f in files:
        row = present.get(f.path)
        if row is None or (row.size, row.mtime_ns) != (f.size, f.mtime_ns):
            todo.append(f)
    return Plan(todo, present, len(files) - len(todo))
