"""Metadata as arrays indexed by id, behind one interface: ``get(ids, cols)`` for the
fields a hit shows and ``mask(expr)`` for the images a filter matches.

A field is loaded from the catalog the first time a filter or a hit needs it (one
indexed SQL read) and kept until the catalog's metadata or images change. A filter is
then a few numpy operations over all ids, which also gives its selectivity at once.
A missing value matches no test (``not`` inverts that, as SQL's NULL does not).
"""

from __future__ import annotations

import json
import operator
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from index.rerank.filter_lang import And, Cond, Literal, Node, Not, Or, check, parse
from index.store import metadata as meta
from index.store.catalog import Catalog
from index.store.roots import build_root, relative_to

COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge}


@dataclass
class Column:
    """One field over ids 0..n-1: numbers (integer, float, boolean, timestamp as epoch
    seconds), string codes into ``vocab``, or (id, code) pairs for lists."""

    kind: str
    present: np.ndarray
    numbers: np.ndarray | None = None
    codes: np.ndarray | None = None
    vocab: list[str] = field(default_factory=list)
    pair_ids: np.ndarray | None = None
    pair_codes: np.ndarray | None = None

    def shown(self, i: int) -> str | None:
        """The value of id ``i`` as text (ISO time, JSON list), None when missing."""
        if i >= len(self.present) or not self.present[i]:
            return None
        if self.kind == "list":
            assert self.pair_ids is not None and self.pair_codes is not None
            return json.dumps([self.vocab[c] for c in self.pair_codes[self.pair_ids == i]])
        if self.kind == "string":
            assert self.codes is not None
            return self.vocab[int(self.codes[i])]
        assert self.numbers is not None
        number = float(self.numbers[i])
        if self.kind == "timestamp":
            return datetime.fromtimestamp(number, timezone.utc).isoformat()
        if self.kind == "boolean":
            return "true" if number else "false"
        return str(int(number)) if self.kind == "integer" else repr(number)


MASK_CACHE_SIZE = 64


class MetadataProvider:
    """The metadata of one catalog, as columns; safe to share between threads."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self._lock = threading.Lock()
        self._key: tuple[int, int] | None = None
        # Per connection (one per thread): SQLite's data_version is a per-connection count.
        self._quick: dict[int, tuple[int, int]] = {}
        self._columns: dict[str, Column] = {}
        self._types: dict[str, str] = {}
        self._size = 0
        # Filter text -> its mask: real traffic repeats a few filters, and evaluating one
        # walks every id (most of a filtered query's time at 50k ids).
        self._masks: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()

    def types(self) -> dict[str, str]:
        self._refresh()
        return dict(self._types)

    def compile(self, text: str) -> Node:
        """A parsed and type-checked filter (FilterError with a position otherwise)."""
        return check(parse(text), self.types())

    def mask(self, expr: Node | str, size: int) -> np.ndarray:
        """Which of ids 0..size-1 match ``expr`` (read-only; cached per filter text until
        the catalog's metadata changes)."""
        if isinstance(expr, str):
            self._refresh()
            with self._lock:
                cached = self._masks.get((expr, size))
                if cached is not None:
                    self._masks.move_to_end((expr, size))
                    return cached
        node = self.compile(expr) if isinstance(expr, str) else expr
        out = self._eval(node)
        out = out[:size] if len(out) >= size else \
            np.concatenate([out, np.zeros(size - len(out), bool)])
        if isinstance(expr, str):
            out.flags.writeable = False
            with self._lock:
                self._masks[(expr, size)] = out
                while len(self._masks) > MASK_CACHE_SIZE:
                    self._masks.popitem(last=False)
        return out

    def get(self, ids: Sequence[int], cols: Sequence[str]) -> list[dict[str, str]]:
        """The named fields of each id, as text; a missing value is left out."""
        types = self.types()
        unknown = [c for c in cols if c not in types]
        if unknown:
            from index.ann.query import InvalidQueryError

            raise InvalidQueryError(f"unknown metadata fields {unknown} (fields: "
                                    f"{', '.join(sorted(types))})")
        columns = {c: self.column(c) for c in cols}
        out = []
        for i in ids:
            row = {c: col.shown(int(i)) for c, col in columns.items()}
            out.append({c: v for c, v in row.items() if v is not None})
        return out

    def column(self, name: str) -> Column:
        self._refresh()
        with self._lock:
            found = self._columns.get(name)
            if found is None:
                found = self._columns[name] = self._load(name)
            return found

    def _refresh(self) -> None:
        # SQLite's data_version changes when another connection commits, total_changes
        # when this one writes: while neither moves on this thread's connection since it
        # last checked, the generation (three queries) is the same, and a filtered query
        # skips reading it. Both counts are per connection, so they are kept per connection.
        conn = self.catalog.sql()
        quick = (conn.execute("PRAGMA data_version").fetchone()[0], conn.total_changes)
        if self._quick.get(id(conn)) == quick:
            return
        key = meta.generation(self.catalog)
        with self._lock:
            if key != self._key:
                self._key = key
                self._columns = {}
                self._masks.clear()
                self._types = meta.field_types(self.catalog)
                self._size = self.catalog.next_id()
            self._quick[id(conn)] = quick

    def _load(self, name: str) -> Column:
        kind = self._types[name]
        if name in meta.DERIVED_FIELDS:
            values = self._derived(name)
        else:
            values = []
            for i, text in self.catalog.sql().execute(
                    "SELECT id, value FROM metadata WHERE key = ?", (name,)):
                try:
                    raw: Any = json.loads(text) if kind == "list" else text
                    values.append((int(i), meta.convert(raw, kind, name)))
                except (ValueError, meta.MetadataError):
                    continue  # an upserted text that does not fit the field's type
        return build_column(kind, values, self._size)

    def _derived(self, name: str) -> list[tuple[int, Any]]:
        root = build_root(self.catalog)
        rows = self.catalog.sql().execute(
            "SELECT id, path, size, mtime_ns FROM images WHERE deleted = 0")
        if name == "bytes":
            return [(int(i), int(s)) for i, _, s, _ in rows]
        if name == "mtime":
            return [(int(i), datetime.fromtimestamp(m / 1e9, timezone.utc))
                    for i, _, _, m in rows]
        out = []
        for i, path, _, _ in rows:
            text = os.fsdecode(path) if isinstance(path, bytes) else str(path)
            shown = relative_to(text, root)
            if name == "folder":
                out.append((int(i), os.path.dirname(shown).replace(os.sep, "/")))
            else:
                out.append((int(i), os.path.splitext(shown)[1].lstrip(".").lower()))
        return out

    def _eval(self, node: Node) -> np.ndarray:
        if isinstance(node, Not):
            return ~self._eval(node.part)
        if isinstance(node, And | Or):
            parts = [self._eval(p) for p in node.parts]
            combine = np.logical_and if isinstance(node, And) else np.logical_or
            result = parts[0]
            for part in parts[1:]:
                result = combine(result, part)
            return result
        return test_mask(self.column(node.field), node, self._size)


def build_column(kind: str, values: list[tuple[int, Any]], size: int) -> Column:
    present = np.zeros(size, bool)
    ids = np.array([i for i, _ in values if i < size], dtype=np.int64)
    kept = [v for i, v in values if i < size]
    present[ids] = True
    if kind == "list":
        vocab: dict[str, int] = {}
        pair_ids, pair_codes = [], []
        for i, items in zip(ids.tolist(), kept, strict=True):
            for item in items:
                pair_ids.append(i)
                pair_codes.append(vocab.setdefault(item, len(vocab)))
        return Column(kind, present, vocab=list(vocab), pair_ids=np.array(pair_ids, np.int64),
                      pair_codes=np.array(pair_codes, np.int64))
    if kind == "string":
        words: dict[str, int] = {}
        codes = np.full(size, -1, np.int64)
        codes[ids] = [words.setdefault(v, len(words)) for v in kept]
        return Column(kind, present, codes=codes, vocab=list(words))
    numbers = np.zeros(size, np.float64)
    numbers[ids] = [_number(v) for v in kept]
    return Column(kind, present, numbers=numbers)


def _number(value: Literal) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def test_mask(column: Column, test: Cond, size: int) -> np.ndarray:
    """Which ids pass one test; a missing value passes none."""
    if column.kind == "list":
        assert column.pair_ids is not None and column.pair_codes is not None
        wanted = [column.vocab.index(str(v)) for v in test.values if v in column.vocab]
        out = np.zeros(size, bool)
        out[column.pair_ids[np.isin(column.pair_codes, wanted)]] = True
        return out
    if column.kind == "string":
        assert column.codes is not None
        words = column.vocab
        if test.op == "in":
            hits = [w in test.values for w in words]
        elif test.op == "contains":
            hits = [str(test.values[0]) in w for w in words]
        else:
            compare = COMPARE[test.op]
            hits = [bool(compare(w, test.values[0])) for w in words]
        by_code = np.array(hits + [False], bool)  # code -1 (missing) reads the last entry
        return by_code[column.codes]
    assert column.numbers is not None
    numbers = [_number(v) for v in test.values]
    if test.op == "in":
        return column.present & np.isin(column.numbers, numbers)
    return column.present & COMPARE[test.op](column.numbers, numbers[0])
