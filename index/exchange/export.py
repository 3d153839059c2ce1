"""Write an index directory's live embeddings to one of the exchange layouts, streaming.

Rows go out in id order, ``batch_rows`` at a time, into files of at most
``rows_per_file`` rows; memory stays at one batch whatever the index size.
Vectors are the stored values exactly (not re-normalised), so an import stores
the same bits again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from index.exchange.layouts import FORMATS, META_DIR, NPY_DIR, ExchangeError, write_sidecar
from index.store.catalog import Catalog
from index.store.contract import stored_identity
from index.store.directory import IndexDirectory
from index.store.vectors import VectorStore

ROWS_PER_FILE = 1_000_000


@dataclass(frozen=True)
class ExportReport:
    rows: int
    files: int
    dim: int


def export_index(directory: IndexDirectory, out: Path, fmt: str, *,
                 rows_per_file: int = ROWS_PER_FILE, batch_rows: int = 65536,
                 progress: Any = None) -> ExportReport:
    """Write the live vectors of ``directory`` to ``out`` as ``fmt`` (parquet or npy).

    ``progress`` is called with the rows of each batch written (a tqdm ``update``).
    """
    if fmt not in FORMATS:
        raise ExchangeError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if out.exists() and any(out.iterdir()):
        raise ExchangeError(f"--out {out} is not empty; choose a new or empty directory")
    catalog = directory.catalog(readonly=True)
    try:
        identity = stored_identity(catalog)
        if identity is None:
            raise ExchangeError(f"{directory.path} holds no vectors yet")
        store = directory.vector_store(catalog, identity.embed_dim)
        writer = _ParquetOut(out, identity.embed_dim) if fmt == "parquet" else \
            _NpyOut(out, identity.embed_dim, _stored_dtype(directory),
                    catalog.metadata_keys())
        rows = 0
        for ids, keys, vectors, meta in _batches(catalog, store, batch_rows):
            for part in _split(rows, len(ids), rows_per_file):
                writer.write(part[0] // rows_per_file, ids[part[1]], keys[part[1]],
                             vectors[part[1]], meta[part[1]])
            rows += len(ids)
            if progress is not None:
                progress(len(ids))
        writer.close()
        write_sidecar(out, identity, fmt, rows)
        return ExportReport(rows, writer.files, identity.embed_dim)
    finally:
        catalog.close()


def _stored_dtype(directory: IndexDirectory) -> str:
    """clip-retrieval writes float16; a float32 store exports float32 so nothing is lost."""
    if directory.current_version() is None:
        return "float16"
    return directory.manifest().vector_dtype


def _batches(catalog: Catalog, store: VectorStore, batch_rows: int
             ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    for rows in catalog.iter_live(batch_rows):
        ids = np.array([i for i, _ in rows], dtype=np.int64)
        meta = catalog.metadata_of(int(ids[0]), int(ids[-1]))
        yield (ids, np.array([p for _, p in rows], dtype=object),
               store.raw(ids),
               np.array([meta.get(int(i), {}) for i in ids], dtype=object))


def _split(done: int, n: int, per_file: int) -> Iterator[tuple[int, slice]]:
    """Slices of a batch of ``n`` rows starting at row ``done`` that fall in one file each."""
    start = 0
    while start < n:
        room = per_file - (done + start) % per_file
        yield done + start, slice(start, min(n, start + room))
        start += room


class _ParquetOut:
    def __init__(self, out: Path, dim: int):
        self.out, self.dim = out, dim
        self.schema = pa.schema([("id", pa.int64()), ("key", pa.string()),
                                 ("metadata", pa.map_(pa.string(), pa.string())),
                                 ("embedding", pa.list_(pa.float32(), dim))])
        self._writer: pq.ParquetWriter | None = None
        self._file = -1
        self.files = 0

    def write(self, file_no: int, ids: np.ndarray, keys: np.ndarray, vectors: np.ndarray,
              meta: np.ndarray) -> None:
        if file_no != self._file:
            self.close()
            self.out.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self.out / f"embeddings-{file_no:05d}.parquet",
                                            self.schema)
            self._file, self.files = file_no, self.files + 1
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
        table = pa.table([pa.array(ids), pa.array(keys.tolist(), pa.string()),
                          pa.array([list(m.items()) for m in meta], self.schema.field(2).type),
                          pa.FixedSizeListArray.from_arrays(flat, self.dim)],
                         schema=self.schema)
        assert self._writer is not None
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class _NpyOut:
    """clip-retrieval's layout: one .npy per file number, written through a memory map so a
    file of a million rows never sits in RAM, and its metadata Parquet beside it."""

    def __init__(self, out: Path, dim: int, dtype: str, meta_keys: list[str]):
        self.out, self.dim, self.dtype, self.meta_keys = out, dim, dtype, meta_keys
        self._file = -1
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._spill: list[Path] = []
        self.files = 0

    def write(self, file_no: int, ids: np.ndarray, keys: np.ndarray, vectors: np.ndarray,
              meta: np.ndarray) -> None:
        if file_no != self._file:
            self.close()
            self._file, self.files = file_no, self.files + 1
            (self.out / NPY_DIR).mkdir(parents=True, exist_ok=True)
            (self.out / META_DIR).mkdir(parents=True, exist_ok=True)
            self._meta_writer = pq.ParquetWriter(
                self.out / META_DIR / f"metadata_{file_no}.parquet", self._schema())
        spill = self.out / NPY_DIR / f".part_{file_no}_{len(self._spill)}.npy"
        np.save(spill, vectors.astype(self.dtype))
        self._spill.append(spill)
        columns: dict[str, Any] = {"image_path": keys.tolist(), "id": ids}
        for key in self.meta_keys:
            columns[key] = [m.get(key) for m in meta]
        self._meta_writer.write_table(pa.table(columns, schema=self._schema()))

    def _schema(self) -> pa.Schema:
        return pa.schema([("image_path", pa.string()), ("id", pa.int64()),
                          *[(k, pa.string()) for k in self.meta_keys]])

    def close(self) -> None:
        """Join the spilled parts into img_emb_N.npy through a memory map."""
        if self._file < 0 or not self._spill:
            return
        parts = [np.load(p, mmap_mode="r") for p in self._spill]
        total = sum(len(p) for p in parts)
        target = np.lib.format.open_memmap(self.out / NPY_DIR / f"img_emb_{self._file}.npy",
                                           mode="w+", dtype=self.dtype,
                                           shape=(total, self.dim))
        row = 0
        for part in parts:
            target[row:row + len(part)] = part
            row += len(part)
        target.flush()
        del target, parts
        for path in self._spill:
            path.unlink()
        self._spill = []
        self._meta_writer.close()
