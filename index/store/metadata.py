"""Per-image metadata in the catalog: typed values, the build's automatic fields, sidecars.

Values live in the catalog's ``metadata`` table (id, key, value), the same rows an online
``Upsert`` writes, so build-time and upserted metadata are one store. Every value is kept
as canonical text and the type of each field is declared once in ``metadata_fields``;
a field nobody declared (an upserted key) is a string. One index on (key, value) serves
every field that is filtered on. Typed values are parsed back in ``index.rerank.columns``.

Automatic fields: ``folder``, ``ext``, ``bytes`` and ``mtime`` follow from the images
table (no copy to keep in step); ``width``, ``height``, ``taken_at`` and ``camera`` are
read from each new image's header at build time (no pixels are decoded).
"""

from __future__ import annotations

import csv
import json
import math
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from common.errors import VisearchError
from index.store.catalog import Catalog

TYPES = ("string", "integer", "float", "boolean", "timestamp", "list")
# Derived from the images table on read: never stored, always current.
DERIVED_FIELDS = {"folder": "string", "ext": "string", "bytes": "integer", "mtime": "timestamp"}
# Read from image headers at build time.
HEADER_FIELDS = {"width": "integer", "height": "integer", "taken_at": "timestamp",
                 "camera": "string"}
AUTOMATIC_FIELDS = {**DERIVED_FIELDS, **HEADER_FIELDS}
LIST_SEPARATOR = "|"  # between the items of a list in a CSV cell
GENERATION_KEY = "metadata_generation"

SCHEMA = """
CREATE TABLE IF NOT EXISTS metadata_fields (key TEXT PRIMARY KEY, type TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS metadata_key_value ON metadata(key, value);
"""

Value = str | int | float | bool | datetime | list[str]


class MetadataError(VisearchError, ValueError):
    """A sidecar file that cannot be read, or a value that does not fit its field's type."""


@dataclass
class SidecarRows:
    """A sidecar's rows by path, with the type of each column."""

    types: dict[str, str]
    rows: list[tuple[str, dict[str, Value]]] = field(default_factory=list)


@dataclass
class MetadataReport:
    updated: int = 0  # images whose fields were written
    unknown_paths: list[str] = field(default_factory=list)  # rows naming no indexed image

    def summary(self) -> str:
        unknown = f", {len(self.unknown_paths)} rows name no indexed image" \
            if self.unknown_paths else ""
        return f"metadata for {self.updated} images{unknown}"


# --- typed values -----------------------------------------------------------

def parse_timestamp(text: str) -> datetime:
    """ISO 8601 (a date, or a date and time); without a zone it is UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise MetadataError(f"{text!r} is not an ISO 8601 date or time") from exc
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def encode(value: Value, kind: str) -> str:
    """A value as stored: canonical text of ``kind``."""
    if kind == "list":
        items = value if isinstance(value, list) else [str(value)]
        return json.dumps([str(v) for v in items], ensure_ascii=False)
    if kind == "timestamp":
        stamp = value if isinstance(value, datetime) else parse_timestamp(str(value))
        return stamp.astimezone(timezone.utc).isoformat()
    if kind == "boolean":
        return "true" if value is True or str(value).lower() == "true" else "false"
    if kind == "integer":
        return str(int(value))  # type: ignore[arg-type]
    if kind == "float":
        number = float(value)  # type: ignore[arg-type]
        if not math.isfinite(number):
            raise MetadataError(f"{value!r} is not a finite number")
        return repr(number)
    return str(value)


def infer_type(values: Iterable[Any]) -> str:
    """The narrowest type every value fits (JSON values, or text from a CSV cell)."""
    kinds = {_kind_of(v) for v in values if v is not None and v != ""}
    if not kinds:
        return "string"
    if kinds == {"integer", "float"}:
        return "float"
    if len(kinds) == 1:
        return kinds.pop()
    return "string" if "list" not in kinds else "list"


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "list"
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return "boolean"
    for kind, parse in (("integer", int), ("float", float)):
        try:
            parse(text)
            return kind
        except ValueError:
            pass
    if len(text) >= 10 and text[4] == "-" and text[7] == "-":
        try:
            parse_timestamp(text)
            return "timestamp"
        except MetadataError:
            pass
    return "string"


def convert(value: Any, kind: str, where: str) -> Value:
    """``value`` as ``kind``; MetadataError names ``where`` (file and line) otherwise."""
    try:
        if kind == "list":
            if isinstance(value, list):
                return [str(v) for v in value]
            return [v.strip() for v in str(value).split(LIST_SEPARATOR) if v.strip()]
        if kind == "timestamp":
            return parse_timestamp(str(value))
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            if str(value).strip().lower() not in ("true", "false"):
                raise ValueError(value)
            return str(value).strip().lower() == "true"
        if kind == "integer":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(str(value).strip()) if not isinstance(value, int | float) else int(value)
        if kind == "float":
            return float(value)
        return str(value)
    except (ValueError, MetadataError) as exc:
        raise MetadataError(f"{where}: {value!r} is not a {kind}") from exc


# --- sidecar files ----------------------------------------------------------

def read_sidecar(path: Path) -> SidecarRows:
    """A CSV file with a ``path`` column (a header ``name:type`` declares a type, else it is
    inferred; list items are separated by ``|``) or JSON Lines with a ``path`` key.
    Relative paths are taken as ``@list`` files take them (from the current directory)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MetadataError(f"cannot read metadata file {path}: {exc}") from exc
    if str(path).endswith((".jsonl", ".ndjson", ".json")):
        records = _jsonl_records(text, path)
        declared: dict[str, str] = {}
    else:
        records, declared = _csv_records(text, path)
    names = sorted({k for _, _, rec in records for k in rec} | set(declared))
    types = {n: declared.get(n) or infer_type(rec.get(n) for _, _, rec in records)
             for n in names}
    for name, kind in types.items():
        if name in DERIVED_FIELDS or kind not in TYPES:
            raise MetadataError(f"{path}: field {name!r}: "
                                + (f"{name} is automatic and cannot be set"
                                   if name in DERIVED_FIELDS else
                                   f"unknown type {kind!r} (one of {', '.join(TYPES)})"))
    out = SidecarRows(types)
    for line, item_path, record in records:
        where = f"{path}:{line}"
        out.rows.append((os.path.abspath(item_path), {
            k: convert(v, types[k], f"{where}: field {k!r}") for k, v in record.items()
            if v is not None and v != ""}))
    return out


def _jsonl_records(text: str, path: Path) -> list[tuple[int, str, dict[str, Any]]]:
    records = []
    for line, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise MetadataError(f"{path}:{line}: not JSON ({exc.msg})") from exc
        if not isinstance(record, dict) or not isinstance(record.get("path"), str):
            raise MetadataError(f"{path}:{line}: each line must be an object with a "
                                f"\"path\" string")
        item = record.pop("path")
        for key, value in record.items():
            ok = isinstance(value, str | int | float | bool) or value is None or (
                isinstance(value, list) and all(isinstance(v, str | int | float) for v in value))
            if not ok:
                raise MetadataError(f"{path}:{line}: field {key!r}: values are strings, "
                                    f"numbers, booleans or lists of strings")
        records.append((line, item, record))
    return records


def _csv_records(text: str, path: Path) -> tuple[list[tuple[int, str, dict[str, Any]]],
                                                 dict[str, str]]:
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if not header:
        raise MetadataError(f"{path}: empty CSV file (the first line names the columns)")
    names, declared = [], {}
    for column in header:
        name, _, kind = column.strip().partition(":")
        names.append(name)
        if kind:
            declared[name] = kind
    if "path" not in names:
        raise MetadataError(f"{path}: no 'path' column in the CSV header {header}")
    records = []
    for line, cells in enumerate(reader, 2):
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(names):
            raise MetadataError(f"{path}:{line}: {len(cells)} cells, the header has "
                                f"{len(names)}")
        record = dict(zip(names, cells, strict=True))
        records.append((line, record.pop("path"), record))
    declared.pop("path", None)
    return records, declared


# --- the store --------------------------------------------------------------

def ensure_schema(catalog: Catalog) -> None:
    with catalog.sql() as conn:
        conn.executescript(SCHEMA)


def field_types(catalog: Catalog) -> dict[str, str]:
    """Every field an image may have, with its type: automatic, declared, upserted."""
    conn = catalog.sql()
    types = dict(AUTOMATIC_FIELDS)
    types.update((str(k), "string") for (k,) in conn.execute("SELECT DISTINCT key FROM metadata"))
    try:
        types.update((str(k), str(t)) for k, t in conn.execute(
            "SELECT key, type FROM metadata_fields"))
    except sqlite3.OperationalError:  # an index built before typed metadata
        pass
    return types


def generation(catalog: Catalog) -> tuple[int, int]:
    """Changes whenever metadata or the images change: the column cache's key."""
    conn = catalog.sql()
    stamp = conn.execute("SELECT MAX(rowid) FROM metadata").fetchone()[0] or 0
    images = conn.execute("SELECT MAX(rowid) FROM images").fetchone()[0] or 0
    return int(stamp) * 1_000_003 + int(images), int(catalog.get_meta(GENERATION_KEY) or 0)


def write_fields(catalog: Catalog, rows: Sequence[tuple[int, Mapping[str, Value]]],
                 types: Mapping[str, str]) -> None:
    """Set fields of ids (replacing earlier values of those fields) in one transaction."""
    ensure_schema(catalog)
    with catalog.sql() as conn:
        conn.executemany("INSERT OR REPLACE INTO metadata_fields VALUES (?, ?)",
                         sorted(types.items()))
        conn.executemany("INSERT OR REPLACE INTO metadata VALUES (?, ?, ?)",
                         [(int(i), k, encode(v, types[k])) for i, fields in rows
                          for k, v in sorted(fields.items())])
        bump = int(catalog.get_meta(GENERATION_KEY) or 0) + 1
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (GENERATION_KEY, str(bump)))


def apply_sidecar(catalog: Catalog, sidecar: SidecarRows, root: str | None) -> MetadataReport:
    """Write a sidecar's fields to the live images it names; rows for unknown paths are
    reported, not fatal. A path not found as given is also tried under the build root."""
    report = MetadataReport()
    wanted = [p for p, _ in sidecar.rows]
    if root:
        wanted += [os.path.join(root, os.path.relpath(p)) for p in wanted]
    ids = catalog.ids_for_paths(wanted)
    rows = []
    for item_path, values in sidecar.rows:
        found = ids.get(item_path)
        if found is None and root:
            found = ids.get(os.path.join(root, os.path.relpath(item_path)))
        if found is None:
            report.unknown_paths.append(item_path)
        elif values:
            rows.append((found, values))
    write_fields(catalog, rows, sidecar.types)
    report.updated = len(rows)
    return report


def header_fields(path: str) -> dict[str, Value]:
    """width, height and, when the file has EXIF, taken_at and camera; {} if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            out: dict[str, Value] = {"width": image.width, "height": image.height}
            exif = image.getexif()
    except (OSError, ValueError, Image.DecompressionBombError):
        return {}
    sub = exif.get_ifd(0x8769) if exif else {}
    taken = sub.get(0x9003) or exif.get(0x0132)  # DateTimeOriginal, else DateTime
    if isinstance(taken, str):
        try:
            out["taken_at"] = datetime.strptime(taken.strip("\x00 "), "%Y:%m:%d %H:%M:%S"
                                                ).replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    camera = " ".join(str(exif.get(t, "")).strip("\x00 ") for t in (0x010F, 0x0110)).strip()
    if camera:
        out["camera"] = camera
    return out


def record_header_fields(catalog: Catalog, progress: bool = False) -> int:
    """Read the header fields of live images that have none yet; returns how many."""
    ensure_schema(catalog)
    todo = [(int(i), str(p)) for i, p in catalog.sql().execute(
        "SELECT id, path FROM images WHERE deleted = 0 AND id NOT IN "
        "(SELECT id FROM metadata WHERE key = 'width') ORDER BY id")]
    todo = [(i, p) for i, p in todo if os.path.isfile(p)]  # keys of vectors are no files
    if not todo:
        return 0
    from tqdm import tqdm

    rows = [(i, header_fields(p)) for i, p in tqdm(todo, desc="metadata", unit="img",
                                                   disable=not progress)]
    write_fields(catalog, [r for r in rows if r[1]], HEADER_FIELDS)
    return len(rows)
