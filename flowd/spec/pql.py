"""The subset of the Polyaxon Query Language that joins use (POLYFLOW §8.4): parse a query and
a sort, and evaluate them over run records (plain dicts of run fields).

A query is conditions ``field: value`` combined with ``,`` or ``AND`` (and ``OR``, parentheses;
``AND`` binds tighter). A value is a literal, or an operator form: ``~v`` (negation), ``<v``,
``<=v``, ``>v``, ``>=v``, ``a..b`` (inclusive range, numbers or dates), ``a|b|c`` (in), ``nil``
(null), ``%`` at the start and/or end of a string (suffix/prefix/substring match). A sort is a
comma list of fields, ``-`` prefix for descending. Pure: parsing raises :class:`PqlError` with a
message that names the problem and where; evaluation never raises.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

__all__ = ["Condition", "PqlError", "Query", "parse_query", "parse_sort", "FIELDS", "PREFIXES", "check_field", "sort_records"]

# run fields a query or a sort may name (POLYFLOW §8.4)
FIELDS = ("uuid", "name", "status", "kind", "runtime", "tags", "pipeline", "controller",
          "created_at", "started_at", "finished_at", "duration")
# fields with a key: ``inputs.lr``, ``outputs.loss``, ``metrics.loss``, ``meta_values.iteration``
PREFIXES = ("inputs", "outputs", "metrics", "meta_values")
_TIMES = frozenset({"created_at", "started_at", "finished_at"})


class PqlError(ValueError):
    """A query or sort that cannot be parsed, or names an unknown field."""


def check_field(field: str) -> str | None:
    """None if ``field`` is a run field a query may name, else why not."""
    if field in FIELDS:
        return None
    head, dot, key = field.partition(".")
    if dot and head in PREFIXES and key:
        return None
    return (f"unknown field `{field}` (fields: {', '.join(FIELDS)}, "
            f"{', '.join(p + '.<key>' for p in PREFIXES)})")


# ------------------------------------------------------------------------------- conditions


class Condition:
    __slots__ = ("field", "op", "arg", "negate", "text")

    def __init__(self, field: str, op: str, arg: Any, negate: bool, text: str) -> None:
        self.field, self.op, self.arg, self.negate, self.text = field, op, arg, negate, text

    def match(self, record: Mapping[str, Any]) -> bool:
        value = field_value(record, self.field)
        hit = _match(self.op, self.arg, value, self.field in _TIMES)
        return not hit if self.negate else hit


class Query:
    """A parsed query: ``any`` of ``all`` of conditions (disjunctive normal form of the tree)."""

    __slots__ = ("tree", "fields")

    def __init__(self, tree: Any, fields: list[str]) -> None:
        self.tree = tree
        self.fields = fields

    def match(self, record: Mapping[str, Any]) -> bool:
        return _eval(self.tree, record)


def _eval(node: Any, record: Mapping[str, Any]) -> bool:
    if isinstance(node, Condition):
        return node.match(record)
    kind, parts = node
    if kind == "and":
        return all(_eval(p, record) for p in parts)
    return any(_eval(p, record) for p in parts)


def field_value(record: Mapping[str, Any], field: str) -> Any:
    if field in record:
        return record[field]
    head, _, key = field.partition(".")
    section = record.get(head)
    if isinstance(section, Mapping):
        return section.get(key)
    return None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _time(text: str) -> float | None:
    n = _number(text)
    if n is not None:
        return n
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def _as(text: str, value: Any, is_time: bool) -> Any:
    """The literal ``text`` as the type of the record's ``value`` (None: not comparable)."""
    if is_time:
        return _time(text)
    if isinstance(value, bool):
        low = text.strip().lower()
        return True if low in ("true", "1", "yes") else False if low in ("false", "0", "no") else None
    if isinstance(value, (int, float)):
        return _number(text)
    return text


def _equal(text: str, value: Any, is_time: bool) -> bool:
    if isinstance(value, list):  # tags: membership
        return any(_equal(text, v, is_time) for v in value)
    if value is None:
        return False
    literal = _as(text, value, is_time)
    if literal is None:
        return str(value) == text
    return bool(literal == value)


def _match(op: str, arg: Any, value: Any, is_time: bool) -> bool:
    if op == "nil":
        return value is None
    if op == "eq":
        return _equal(arg, value, is_time)
    if op == "in":
        return any(_equal(a, value, is_time) for a in arg)
    if op == "like":
        if value is None:
            return False
        pattern, start, end = arg
        text = str(value)
        if start and end:
            return pattern in text
        if start:
            return text.endswith(pattern)
        return text.startswith(pattern)
    if value is None or isinstance(value, (list, dict, bool)):
        return False
    if op == "range":
        lo, hi = (_as(a, value, is_time) for a in arg)
        if lo is None or hi is None:
            return False
        try:
            return bool(lo <= value <= hi)
        except TypeError:
            return False
    literal = _as(arg, value, is_time)
    if literal is None:
        return False
    try:
        return bool(_ORDER[op](value, literal))
    except TypeError:
        return False


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}

# ----------------------------------------------------------------------------------- parsing

_FIELD = re.compile(r"[A-Za-z_][\w.\-]*")
_WORD_SEP = re.compile(r"\s+(AND|OR)\s+|\s+(AND|OR)$")


def parse_query(text: str, *, strict_fields: bool = True) -> Query:
    """Parse ``text``. With ``strict_fields`` an unknown field is an error; without it (checking
    a query that still holds templates) only the syntax is checked. Raises PqlError."""
    if not isinstance(text, str) or not text.strip():
        raise PqlError("the query is empty")
    parser = _Parser(text, strict_fields)
    tree = parser.expr()
    parser.ws()
    if parser.pos < len(text):
        raise PqlError(f"unexpected `{text[parser.pos:parser.pos + 12]}` at character {parser.pos + 1}")
    return Query(tree, parser.fields)


class _Parser:
    def __init__(self, text: str, strict: bool) -> None:
        self.text = text
        self.pos = 0
        self.strict = strict
        self.fields: list[str] = []

    def ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _keyword(self, word: str) -> bool:
        self.ws()
        end = self.pos + len(word)
        if self.text[self.pos:end] == word and (end == len(self.text) or not (self.text[end].isalnum() or self.text[end] == "_")):
            self.pos = end
            return True
        return False

    def expr(self) -> Any:
        parts = [self.conj()]
        while self._keyword("OR"):
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def conj(self) -> Any:
        parts = [self.atom()]
        while True:
            self.ws()
            if self.pos < len(self.text) and self.text[self.pos] == ",":
                self.pos += 1
            elif not self._keyword("AND"):
                break
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else ("and", parts)

    def atom(self) -> Any:
        self.ws()
        if self.pos >= len(self.text):
            raise PqlError("a condition `field: value` is missing at the end")
        if self.text[self.pos] == "(":
            self.pos += 1
            inner = self.expr()
            self.ws()
            if self.pos >= len(self.text) or self.text[self.pos] != ")":
                raise PqlError(f"`(` without a matching `)` (at character {self.pos + 1})")
            self.pos += 1
            return inner
        m = _FIELD.match(self.text, self.pos)
        if m is None:
            raise PqlError(f"expected a field name at character {self.pos + 1}, got `{self.text[self.pos:self.pos + 12]}`")
        field = m.group(0)
        self.pos = m.end()
        self.ws()
        if self.pos >= len(self.text) or self.text[self.pos] != ":":
            raise PqlError(f"expected `:` after field `{field}` (a condition is `field: value`)")
        self.pos += 1
        if self.strict:
            problem = check_field(field)
            if problem:
                raise PqlError(problem)
        self.fields.append(field)
        return self.value(field)

    def value(self, field: str) -> Condition:
        start = self.pos
        depth = 0
        end = len(self.text)
        i = start
        while i < len(self.text):
            ch = self.text[i]
            if ch == "(":
                depth += 1
            elif ch == ")":
                if depth == 0:
                    end = i
                    break
                depth -= 1
            elif ch == "," and depth == 0:
                end = i
                break
            elif ch.isspace() and depth == 0:
                m = _WORD_SEP.match(self.text, i)
                if m is not None:
                    end = i
                    break
            i += 1
        raw = self.text[start:end].strip()
        self.pos = end
        if not raw:
            raise PqlError(f"field `{field}` has no value")
        return _condition(field, raw)


def _condition(field: str, raw: str) -> Condition:
    text = raw
    negate = text.startswith("~")
    if negate:
        text = text[1:].strip()
        if not text:
            raise PqlError(f"field `{field}`: `~` must be followed by a value")
    if text == "nil":
        return Condition(field, "nil", None, negate, raw)
    for op in ("<=", ">=", "<", ">"):
        if text.startswith(op):
            arg = text[len(op):].strip()
            if not arg:
                raise PqlError(f"field `{field}`: `{op}` must be followed by a value")
            return Condition(field, op, arg, negate, raw)
    if ".." in text:
        lo, _, hi = text.partition("..")
        if not lo.strip() or not hi.strip():
            raise PqlError(f"field `{field}`: a range is `a..b`, got `{text}`")
        return Condition(field, "range", (lo.strip(), hi.strip()), negate, raw)
    if "|" in text:
        items = [t.strip() for t in text.split("|")]
        if any(not t for t in items):
            raise PqlError(f"field `{field}`: an empty choice in `{text}`")
        return Condition(field, "in", items, negate, raw)
    if text.startswith("%") or text.endswith("%"):
        start, end = text.startswith("%"), text.endswith("%") and len(text) > 1
        pattern = text[1 if start else 0:len(text) - 1 if end else len(text)]
        return Condition(field, "like", (pattern, start, end), negate, raw)
    return Condition(field, "eq", text, negate, raw)


# -------------------------------------------------------------------------------------- sort


def parse_sort(text: str | None, *, strict_fields: bool = True) -> list[tuple[str, bool]]:
    """``"metrics.loss, -created_at"`` -> [(field, descending)]. Raises PqlError."""
    if text is None or not str(text).strip():
        return []
    out = []
    for item in str(text).split(","):
        item = item.strip()
        desc = item.startswith("-")
        field = item[1:].strip() if desc else item
        if not field or _FIELD.fullmatch(field) is None:
            raise PqlError(f"sort: `{item}` is not a field name (a sort is `field, -field`)")
        if strict_fields:
            problem = check_field(field)
            if problem:
                raise PqlError(f"sort: {problem}")
        out.append((field, desc))
    return out


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, str(value))


R = TypeVar("R", bound=Mapping[str, Any])


def sort_records(records: list[R], order: list[tuple[str, bool]]) -> list[R]:
    """Stable sort by each field in turn; missing values (null) last whatever the direction."""
    out = list(records)
    for field, desc in reversed(order):
        values = [(field_value(r, field), r) for r in out]
        present = [(v, r) for v, r in values if v is not None]
        present.sort(key=lambda vr: _sort_key(vr[0]), reverse=desc)
        out = [r for _, r in present] + [r for v, r in values if v is None]
    return out
