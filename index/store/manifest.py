"""The manifest: the contract between the build and the server for one index version."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from common.errors import VisearchError
from embedder import ModelIdentity

FORMAT_VERSION = 1


class ManifestError(VisearchError):
    """A manifest is missing, unreadable or from an incompatible format."""


@dataclass(frozen=True)
class IndexSettings:
    """How the ANN index was built and how it is searched by default.

    ``refine_factor`` > 1 re-ranks ``k * refine_factor`` PQ candidates exactly
    with the stored raw vectors; 1 disables re-ranking.
    """

    spec: str
    exact: bool
    auto: bool
    nlist: int | None = None
    pq_m: int | None = None
    nbits: int | None = None
    train_size: int = 0
    default_nprobe: int | None = None
    refine_factor: int = 1
    metric: str = "inner_product"


@dataclass(frozen=True)
class Manifest:
    version: int
    created: str
    model: ModelIdentity
    index: IndexSettings
    vector_dtype: str
    live_count: int
    stored_count: int
    failed_count: int
    index_file: str = "index.faiss"
    build: dict[str, Any] = field(default_factory=dict)
    # The corpus profile queries are compared with (index/drift.py); {} before it existed.
    drift: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def dim(self) -> int:
        return self.model.embed_dim

    def with_index(self, **changes: Any) -> Manifest:
        return replace(self, index=replace(self.index, **changes))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        fmt = data.get("format_version")
        if fmt != FORMAT_VERSION:
            raise ManifestError(f"index format {fmt} is not supported by this program "
                                f"(format {FORMAT_VERSION}); rebuild or upgrade visearch")
        try:
            fields = dict(data)
            fields["model"] = ModelIdentity(**fields["model"])
            fields["index"] = IndexSettings(**fields["index"])
            return cls(**fields)
        except (KeyError, TypeError) as exc:
            raise ManifestError(f"malformed manifest: {exc}") from exc


def utc_now() -> str:
    """A manifest's creation time: UTC, to the second."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def read_manifest(path: Path) -> Manifest:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ManifestError(f"no manifest at {path}") from exc
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc}") from exc
    return Manifest.from_json(data)
