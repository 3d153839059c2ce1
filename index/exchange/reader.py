"""Read either exchange layout as batches of (keys, vectors, metadata), in bounded memory.

Parquet files are read ``batch_rows`` rows at a time; ``.npy`` files are
memory-mapped and sliced in step with their metadata Parquet, so a 10M x 512
folder is read with one batch in RAM.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from index.exchange.layouts import (
    KEY_COLUMNS,
    META_DIR,
    NPY_DIR,
    PARQUET_GLOB,
    Batch,
    ExchangeError,
    detect,
    numbered,
)

SKIP_COLUMNS = frozenset({"id", "embedding", "metadata", *KEY_COLUMNS})


def read_batches(folder: Path, batch_rows: int = 65536) -> Iterator[Batch]:
    """Every row of the layout in ``folder``, in file order."""
    if detect(folder) == "parquet":
        yield from _parquet(folder, batch_rows)
    else:
        yield from _npy(folder, batch_rows)


def _parquet(folder: Path, batch_rows: int) -> Iterator[Batch]:
    for path in numbered(list(folder.glob(PARQUET_GLOB))):
        table = pq.ParquetFile(path)
        if "embedding" not in table.schema_arrow.names:
            raise ExchangeError(f"{path} has no 'embedding' column")
        for record in table.iter_batches(batch_size=batch_rows):
            keys = _keys(record, path, 0)
            column = record.column("embedding")
            flat = column.flatten().to_numpy(zero_copy_only=False)
            vectors = flat.reshape(len(record), -1) if len(record) else flat.reshape(0, 0)
            yield Batch(keys, vectors, _metadata(record))


def _npy(folder: Path, batch_rows: int) -> Iterator[Batch]:
    for emb_path in numbered(list((folder / NPY_DIR).glob("*.npy"))):
        vectors = np.load(emb_path, mmap_mode="r")
        if vectors.ndim != 2:
            raise ExchangeError(f"{emb_path} holds shape {vectors.shape}, not rows of vectors")
        meta_path = folder / META_DIR / (emb_path.stem.replace("img_emb", "metadata")
                                         + ".parquet")
        if not meta_path.is_file():
            # Embeddings without metadata still import: keys name the file and row.
            for start in range(0, len(vectors), batch_rows):
                rows = range(start, min(len(vectors), start + batch_rows))
                yield Batch([f"{emb_path.stem}/{i}" for i in rows],
                            np.asarray(vectors[rows.start:rows.stop]), [{} for _ in rows])
            continue
        start = 0
        for record in pq.ParquetFile(meta_path).iter_batches(batch_size=batch_rows):
            stop = start + len(record)
            if stop > len(vectors):
                raise ExchangeError(f"{meta_path} has more rows than {emb_path} "
                                    f"({len(vectors)})")
            yield Batch(_keys(record, emb_path, start), np.asarray(vectors[start:stop]),
                        _metadata(record))
            start = stop
        if start != len(vectors):
            raise ExchangeError(f"{meta_path} has {start} rows, {emb_path} has {len(vectors)}")


def _keys(record: pa.RecordBatch, source: Path, first_row: int) -> list[str]:
    """The first key-like column (key, image_path, path, url); else file/row numbers."""
    for name in KEY_COLUMNS:
        if name in record.schema.names:
            values = record.column(name).to_pylist()
            return [v if v is not None else f"{source.stem}/{first_row + i}"
                    for i, v in enumerate(values)]
    return [f"{source.stem}/{first_row + i}" for i in range(len(record))]


def _metadata(record: pa.RecordBatch) -> list[dict[str, str]]:
    """Our ``metadata`` map column, or every other column as text (clip-retrieval's
    caption, width, ...); nulls are left out."""
    rows: list[dict[str, str]] = [{} for _ in range(len(record))]
    names = record.schema.names
    if "metadata" in names:
        for row, items in zip(rows, record.column("metadata").to_pylist(), strict=True):
            row.update(items or [])
    for name in names:
        if name in SKIP_COLUMNS:
            continue
        values: list[Any] = record.column(name).to_pylist()
        for row, value in zip(rows, values, strict=True):
            if value is not None:
                row[name] = value if isinstance(value, str) else str(value)
    return rows
