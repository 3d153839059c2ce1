"""Upserted metadata with the same types as a build's sidecar.

The Upsert RPC carries metadata as text (``map<string, string>``). So that a filter
such as ``price < 100`` works on upserted items exactly as on built ones, each field
is typed before it is stored, the way a CSV sidecar is:

- a key may declare its type as a CSV header does: ``price:float``, ``tags:list``;
- otherwise a field the index already knows keeps its type (declared by a sidecar, an
  earlier upsert, or automatic such as ``width``);
- otherwise the type is inferred from the values of that field in the request
  (``infer_type``: integer, float, boolean, ISO 8601 timestamp, else string); a value
  written as a JSON array of strings is a list.

A list is a JSON array (``["red", "sale"]``) or items separated by ``|`` as in a CSV
cell. A value that does not fit its field's type, a declared type that contradicts the
index's, or an automatic field such as ``folder`` is that item's error. ``wire_fields``
is the client's side: typed Python values to text with their type declared.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from index.store.metadata import (
    DERIVED_FIELDS,
    TYPES,
    MetadataError,
    convert,
    encode,
    infer_type,
)


def split_key(key: str) -> tuple[str, str | None]:
    """``name:type`` -> (name, type); a key without a known type suffix is all name."""
    name, sep, kind = key.rpartition(":")
    if sep and name and kind in TYPES:
        return name, kind
    return key, None


def _json_list(text: str) -> list[str] | None:
    if not text.lstrip().startswith("["):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return [str(v) for v in value]
    return None


def _inferred(values: Sequence[str]) -> str:
    if values and all(_json_list(v) is not None for v in values):
        return "list"
    return infer_type(values)


def type_fields(items: Sequence[Mapping[str, str]], known: Mapping[str, str]
                ) -> tuple[list[dict[str, str] | MetadataError], dict[str, str]]:
    """Each item's fields as stored (canonical text of their type) or its error, and the
    type of every field used: what ``known`` (the index's field types) did not yet hold
    joins it in the caller's store with these rows."""
    declared: dict[str, str] = {}
    errors: dict[int, MetadataError] = {}
    for row, fields in enumerate(items):
        for key in fields:
            name, kind = split_key(key)
            if name in DERIVED_FIELDS:
                errors.setdefault(row, MetadataError(
                    f"field {name!r} is automatic and cannot be set"))
            elif kind is not None:
                fixed = known.get(name) or declared.get(name)
                if fixed is not None and fixed != kind:
                    errors.setdefault(row, MetadataError(
                        f"field {name!r} is {fixed} in this index, not {kind}"))
                else:
                    declared[name] = kind
    plain = {split_key(k)[0] for fields in items for k in fields} - set(declared) \
        - set(DERIVED_FIELDS)
    types = {name: known.get(name) or _inferred(
        [v for fields in items for k, v in fields.items() if split_key(k)[0] == name])
        for name in plain}
    types.update(declared)
    out: list[dict[str, str] | MetadataError] = []
    for row, fields in enumerate(items):
        if row in errors:
            out.append(errors[row])
            continue
        try:
            out.append({name: encode(_value(text, types[name], name), types[name])
                        for name, text in ((split_key(k)[0], v) for k, v in fields.items())})
        except MetadataError as exc:
            out.append(exc)
    return out, {name: types[name] for name in types}


def _value(text: str, kind: str, name: str) -> Any:
    if kind == "list":
        listed = _json_list(text)
        if listed is not None:
            return listed
    return convert(text, kind, f"field {name!r}")


def wire_fields(fields: Mapping[str, Any]) -> dict[str, str]:
    """Typed Python values as Upsert metadata: text, with the type declared in the key
    (``price:float``) for every value that is not a plain string."""
    out: dict[str, str] = {}
    for key, value in fields.items():
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, bool):
            out[f"{key}:boolean"] = "true" if value else "false"
        elif isinstance(value, int):
            out[f"{key}:integer"] = str(value)
        elif isinstance(value, float):
            out[f"{key}:float"] = repr(value)
        elif isinstance(value, datetime):
            stamp = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
            out[f"{key}:timestamp"] = stamp.isoformat()
        elif isinstance(value, list | tuple):
            out[f"{key}:list"] = json.dumps([str(v) for v in value], ensure_ascii=False)
        else:
            raise MetadataError(f"field {key!r}: {type(value).__name__} is not a metadata "
                                f"type (string, integer, float, boolean, datetime, list)")
    return out
