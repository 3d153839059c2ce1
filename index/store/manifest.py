"""The manifest: the contract between the build and the server for one index version."""

from __future__ import annotations

import datetime as dt
import json
import re
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
    # Self-tuning (index.ann.tuning): the recall the defaults above measured at build or
    # `eval --apply` time, on sampled stored vectors against exact search. None: not tuned
    # (exact indexes, --no-tune, manifests written before tuning existed).
    target_recall: float | None = None
    tuned_recall: float | None = None
    tuned_k: int | None = None
    tune_queries: int | None = None
    # The vectors the version that was tuned held. A --writable server's publishes carry
    # the tuning of the version it loaded while the count moves on (server.writer), so
    # Info says what count the recall above was measured at. None: not tuned, or older.
    tuned_vectors: int | None = None
    # Where exact re-ranking reads its vectors: "mmap" (the float16 shards, paged in by the
    # OS: least RAM) or "ram" (a float16 copy loaded with the version: fastest).
    refine_store: str = "mmap"


def code_bytes(settings: IndexSettings, dim: int) -> int:
    """Bytes of one vector's code in the ANN index (without its 8-byte id)."""
    if settings.exact:
        return 4 * dim
    if settings.pq_m:
        return (settings.pq_m * (settings.nbits or 8) + 7) // 8
    for name, bits in (("SQ8", 8), ("SQ6", 6), ("SQ4", 4), ("SQfp16", 16)):
        if name in settings.spec:
            return dim * bits // 8
    rabitq = re.search(r"RaBitQ(?:fs)?(\d*)", settings.spec)
    if rabitq:  # sign bits + extra bits per dimension + the correction factors (faiss 1.15)
        bits = int(rabitq.group(1) or 1)
        extra = (dim * (bits - 1) + 7) // 8 + 12 if bits > 1 else 0
        return (dim + 7) // 8 + 8 + extra
    return 0


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

    def bytes_per_vector(self) -> dict[str, Any]:
        """What one vector costs: its ANN code and its re-rank store, and where that lives."""
        itemsize = 2 if self.vector_dtype == "float16" else 4
        rerank = 0 if self.index.exact else self.dim * itemsize
        return {"code": code_bytes(self.index, self.dim), "id": 8, "rerank": rerank,
                "rerank_in": "RAM" if self.index.refine_store == "ram" else "mmap (disk)"}

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
