"""The two on-disk layouts of exported embeddings, and what a batch of them holds.

``parquet``: ``DIR/embeddings-NNNNN.parquet`` with columns ``id`` (int64),
``key`` (the catalog path), ``metadata`` (map<string, string>) and ``embedding``
(fixed-size list of float32): one self-describing table.

``npy`` (clip-retrieval's): ``DIR/img_emb/img_emb_N.npy`` (float16 rows) and
``DIR/metadata/metadata_N.parquet`` (row i describes row i: ``image_path``, ``id``
and one column per metadata key), so clip-retrieval's and autofaiss's readers
work on our exports and we import their output.

Either may carry ``DIR/visearch.json``: the model identity and counts, so an
export imported again keeps its model.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import VisearchError
from embedder.config import ModelIdentity

FORMATS = ("parquet", "npy")
SIDECAR = "visearch.json"
PARQUET_GLOB = "embeddings-*.parquet"
NPY_DIR, META_DIR = "img_emb", "metadata"
# Columns clip-retrieval writes that name the image, in the order we prefer them as keys.
KEY_COLUMNS = ("key", "image_path", "path", "url")


class ExchangeError(VisearchError):
    """An export or import folder that is missing, empty or not one of our layouts."""


@dataclass
class Batch:
    """Rows read from a layout: keys, vectors (row i is key i) and per-row metadata."""

    keys: list[str]
    vectors: np.ndarray
    metadata: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)


def detect(folder: Path) -> str:
    """Which layout ``folder`` holds.

    Raises:
        ExchangeError: neither layout is there.
    """
    if not folder.is_dir():
        raise ExchangeError(f"--from {folder} is not a directory")
    if any(folder.glob(PARQUET_GLOB)):
        return "parquet"
    if any((folder / NPY_DIR).glob("*.npy")):
        return "npy"
    raise ExchangeError(f"{folder} holds neither {PARQUET_GLOB} files nor {NPY_DIR}/*.npy "
                        f"(clip-retrieval's layout); export one with `visearch export`")


def numbered(paths: list[Path]) -> list[Path]:
    """Files in the order of the number in their name (img_emb_10 after img_emb_9)."""
    def number(path: Path) -> int:
        found = re.findall(r"\d+", path.stem)
        return int(found[-1]) if found else -1

    return sorted(paths, key=lambda p: (number(p), p.name))


def write_sidecar(folder: Path, identity: ModelIdentity, fmt: str, count: int) -> None:
    folder.joinpath(SIDECAR).write_text(json.dumps(
        {"format": fmt, "count": count, "model": asdict(identity)}, indent=2, sort_keys=True)
        + "\n")


def read_sidecar(folder: Path) -> dict[str, Any]:
    path = folder / SIDECAR
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise ExchangeError(f"{path} is unreadable ({exc}); delete it to import the vectors "
                            f"as precomputed") from exc


def sidecar_identity(folder: Path) -> ModelIdentity | None:
    model = read_sidecar(folder).get("model")
    return None if model is None else ModelIdentity(**model)
