"""The filter parser: valid expressions, every error kind with its position, injection."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from index.rerank.filter_lang import And, Cond, FilterError, Not, Or, check, parse

TYPES = {"folder": "string", "price": "float", "n": "integer", "tags": "list",
         "taken_at": "timestamp", "ok": "boolean"}


def test_precedence_and_values():
    node = check(parse('folder = "shoes" and price < 100 or not (tags contains "red") '
                       'and taken_at >= "2024-01-01" and n in [1, 2] and ok = true'), TYPES)
    assert isinstance(node, Or)
    assert node.parts[0] == Cond("folder", "=", ("shoes",), 0, (9,)) or \
        isinstance(node.parts[0], And)
    right = node.parts[1]
    assert isinstance(right, And) and isinstance(right.parts[0], Not)
    assert right.parts[1].values == (datetime(2024, 1, 1, tzinfo=timezone.utc),)
    assert right.parts[2].values == (1, 2) and right.parts[3].values == (True,)


@pytest.mark.parametrize("text,kind,position", [
    ("", "syntax", 0),
    ("price <", "syntax", 7),
    ("price < 100 and", "syntax", 15),
    ("(price < 100", "syntax", 12),
    ("price << 3", "syntax", 7),
    ("price ~ 3", "syntax", 6),
    ('folder = "open', "syntax", 9),
    ("n in [1, 2", "syntax", 10),
    ("nope = 1", "unknown_field", 0),
    ("price > 1 and colour = 'x'", "unknown_field", 14),
    ('price < "cheap"', "type_mismatch", 8),
    ("folder = 3", "type_mismatch", 9),
    ("tags = 'red'", "type_mismatch", 0),
    ("ok = 1", "type_mismatch", 5),
    ('taken_at > "yesterday"', "bad_value", 11),
    ("x" * 5000, "too_long", 4096),
    ("(" * 40 + "n = 1" + ")" * 40, "too_long", 33),
])
def test_errors_have_kind_and_position(text, kind, position):
    with pytest.raises(FilterError) as info:
        check(parse(text), TYPES)
    assert info.value.kind == kind
    assert info.value.position == position
    assert f"at position {position}" in str(info.value)


@pytest.mark.parametrize("text", [
    'folder = "x\\" or 1=1; DROP TABLE images; --"',
    "folder = 'a'' or ''1''=''1'",
    'folder = "__import__(\'os\').system(\'rm -rf /\')"',
    "folder = \"a'; DELETE FROM metadata; --\"",
])
def test_injection_attempts_are_plain_strings_or_errors(text):
    """Quotes and semicolons inside strings stay data; outside them they are errors."""
    try:
        node = check(parse(text), TYPES)
    except FilterError as exc:
        assert exc.kind == "syntax"
        return
    assert isinstance(node, Cond) and node.field == "folder" and isinstance(node.values[0], str)


def test_semicolon_outside_a_string_is_a_syntax_error():
    with pytest.raises(FilterError) as info:
        parse('folder = "a"; drop')
    assert info.value.position == 12
