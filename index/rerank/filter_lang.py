"""The filter language: a small typed expression parsed here, by hand, never by eval.

    folder = "shoes" and price < 100 and tags contains "red" and taken_at >= "2024-01-01"

Grammar (keywords are case-insensitive; fields are names of metadata fields)::

    expr       := conj ("or" conj)*
    conj       := unary ("and" unary)*
    unary      := "not" unary | "(" expr ")" | test
    test       := FIELD op value | FIELD "in" "[" value ("," value)* "]" | FIELD "contains" value
    op         := "=" | "!=" | "<" | "<=" | ">" | ">="
    value      := STRING ("..." or '...', backslash escapes) | NUMBER | true | false

Parsing knows no fields; ``check`` then resolves each test against the field types and
turns literals into typed values. Every error is a FilterError with the 0-based position
of the problem in the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from index.ann.query import InvalidQueryError
from index.store.metadata import MetadataError, parse_timestamp

MAX_FILTER_CHARS = 4096
MAX_DEPTH = 32
OPS = ("=", "!=", "<", "<=", ">", ">=")
KEYWORDS = {"and", "or", "not", "in", "contains", "true", "false"}

Literal = str | int | float | bool | datetime


class FilterError(InvalidQueryError):
    """A filter that cannot be parsed or does not fit the fields (INVALID_ARGUMENT)."""

    def __init__(self, kind: str, message: str, position: int):
        super().__init__(f"filter: {message} at position {position}")
        self.kind = kind  # syntax, unknown_field, type_mismatch, bad_value, too_long
        self.position = position


@dataclass(frozen=True)
class Cond:
    field: str
    op: str  # one of OPS, "in" or "contains"
    values: tuple[Literal, ...]  # one value, or the list of "in"
    position: int  # of the field name
    value_positions: tuple[int, ...]


@dataclass(frozen=True)
class And:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    part: Node


Node = Cond | And | Or | Not

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<op>!=|<=|>=|=|<|>)
  | (?P<punct>[()\[\],])
  | (?P<quote>["'])
""", re.VERBOSE)


@dataclass(frozen=True)
class _Tok:
    kind: str  # number, name, keyword, op, punct, string, end
    text: str
    value: Literal | None
    pos: int


def tokenize(text: str) -> list[_Tok]:
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError("too_long", f"the filter is {len(text):,} characters, over the "
                                      f"limit of {MAX_FILTER_CHARS:,}", MAX_FILTER_CHARS)
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise FilterError("syntax", f"unexpected character {text[pos]!r}", pos)
        kind = match.lastgroup or ""
        if kind == "quote":
            value, end = _string(text, pos)
            out.append(_Tok("string", text[pos:end], value, pos))
            pos = end
            continue
        word = match.group()
        if kind == "number":
            value_n: Literal = float(word) if any(c in word for c in ".eE") else int(word)
            out.append(_Tok("number", word, value_n, pos))
        elif kind == "name" and word.lower() in KEYWORDS:
            out.append(_Tok("keyword", word.lower(), None, pos))
        elif kind != "space":
            out.append(_Tok(kind, word, None, pos))
        pos = match.end()
    out.append(_Tok("end", "", None, len(text)))
    return out


def _string(text: str, start: int) -> tuple[str, int]:
    quote, pos = text[start], start + 1
    chars: list[str] = []
    escapes = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
    while pos < len(text):
        ch = text[pos]
        if ch == quote:
            return "".join(chars), pos + 1
        if ch == "\\":
            if pos + 1 >= len(text) or text[pos + 1] not in escapes:
                raise FilterError("syntax", "unknown escape in a string (use \\\\, \\\", "
                                            "\\', \\n or \\t)", pos)
            chars.append(escapes[text[pos + 1]])
            pos += 2
            continue
        chars.append(ch)
        pos += 1
    raise FilterError("syntax", "unterminated string", start)


class _Parser:
    def __init__(self, text: str):
        self.toks = tokenize(text)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, kind: str, text: str, what: str) -> _Tok:
        tok = self.take()
        if tok.kind != kind or tok.text != text:
            raise FilterError("syntax", f"expected {what}, found {_shown(tok)}", tok.pos)
        return tok

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise FilterError("syntax", "empty filter", 0)
        node = self.expr(0)
        tok = self.peek()
        if tok.kind != "end":
            raise FilterError("syntax", f"expected 'and', 'or' or the end, found {_shown(tok)}",
                              tok.pos)
        return node

    def expr(self, depth: int) -> Node:
        parts = [self.conj(depth)]
        while self.peek().kind == "keyword" and self.peek().text == "or":
            self.take()
            parts.append(self.conj(depth))
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def conj(self, depth: int) -> Node:
        parts = [self.unary(depth)]
        while self.peek().kind == "keyword" and self.peek().text == "and":
            self.take()
            parts.append(self.unary(depth))
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self, depth: int) -> Node:
        tok = self.peek()
        if depth > MAX_DEPTH:
            raise FilterError("too_long", f"nested deeper than {MAX_DEPTH} levels", tok.pos)
        if tok.kind == "keyword" and tok.text == "not":
            self.take()
            return Not(self.unary(depth + 1))
        if tok.kind == "punct" and tok.text == "(":
            self.take()
            node = self.expr(depth + 1)
            self.expect("punct", ")", "')'")
            return node
        return self.test()

    def test(self) -> Cond:
        name = self.take()
        if name.kind != "name":
            raise FilterError("syntax", f"expected a field name, found {_shown(name)}",
                              name.pos)
        op = self.take()
        if op.kind == "op":
            value, at = self.value()
            return Cond(name.text, op.text, (value,), name.pos, (at,))
        if op.kind == "keyword" and op.text == "contains":
            value, at = self.value()
            return Cond(name.text, "contains", (value,), name.pos, (at,))
        if op.kind == "keyword" and op.text == "in":
            self.expect("punct", "[", "'[' after 'in'")
            values, positions = [], []
            while True:
                value, at = self.value()
                values.append(value)
                positions.append(at)
                sep = self.take()
                if sep.kind == "punct" and sep.text == "]":
                    break
                if sep.kind != "punct" or sep.text != ",":
                    raise FilterError("syntax", f"expected ',' or ']', found {_shown(sep)}",
                                      sep.pos)
            return Cond(name.text, "in", tuple(values), name.pos, tuple(positions))
        raise FilterError("syntax", f"expected an operator ({', '.join(OPS)}, in, contains) "
                                    f"after {name.text!r}, found {_shown(op)}", op.pos)

    def value(self) -> tuple[Literal, int]:
        tok = self.take()
        if tok.kind in ("string", "number"):
            assert tok.value is not None
            return tok.value, tok.pos
        if tok.kind == "keyword" and tok.text in ("true", "false"):
            return tok.text == "true", tok.pos
        raise FilterError("syntax", f"expected a value (a quoted string, a number, true or "
                                    f"false), found {_shown(tok)}", tok.pos)


def _shown(tok: _Tok) -> str:
    return "the end of the filter" if tok.kind == "end" else repr(tok.text)


def parse(text: str) -> Node:
    """The syntax tree of ``text``; FilterError (with a position) when it is not a filter."""
    return _Parser(text).parse()


def fields_of(node: Node) -> set[str]:
    if isinstance(node, Cond):
        return {node.field}
    if isinstance(node, Not):
        return fields_of(node.part)
    return set().union(*(fields_of(p) for p in node.parts))


def check(node: Node, types: dict[str, str]) -> Node:
    """``node`` with each literal as its field's type; FilterError for an unknown field,
    an operator the type lacks, or a literal of the wrong type."""
    if isinstance(node, Not):
        return Not(check(node.part, types))
    if isinstance(node, And | Or):
        return type(node)(tuple(check(p, types) for p in node.parts))
    kind = types.get(node.field)
    if kind is None:
        known = ", ".join(sorted(types)) or "none"
        raise FilterError("unknown_field", f"unknown field {node.field!r} (fields: {known})",
                          node.position)
    allowed = {"list": ("contains", "in"), "string": (*OPS, "in", "contains"),
               "boolean": ("=", "!=", "in")}.get(kind, (*OPS, "in"))
    if node.op not in allowed:
        raise FilterError("type_mismatch", f"field {node.field!r} is a {kind}: "
                                           f"'{node.op}' does not apply (use "
                                           f"{', '.join(allowed)})", node.position)
    values = tuple(_typed(v, kind, node.field, at)
                   for v, at in zip(node.values, node.value_positions, strict=True))
    return Cond(node.field, node.op, values, node.position, node.value_positions)


def _typed(value: Literal, kind: str, name: str, at: int) -> Literal:
    def mismatch(expected: str) -> FilterError:
        return FilterError("type_mismatch", f"field {name!r} is a {kind}: expected "
                                            f"{expected}, found {value!r}", at)
    if kind in ("string", "list"):
        if not isinstance(value, str):
            raise mismatch("a quoted string")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise mismatch("true or false")
        return value
    if kind == "timestamp":
        if not isinstance(value, str):
            raise mismatch('a quoted ISO 8601 date, e.g. "2024-01-01"')
        try:
            return parse_timestamp(value)
        except MetadataError as exc:
            raise FilterError("bad_value", f"field {name!r}: {value!r} is not an ISO 8601 "
                                           f"date or time", at) from exc
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise mismatch("a number")
    return value
