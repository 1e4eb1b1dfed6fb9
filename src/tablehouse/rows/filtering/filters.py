"""Row filters: ``?field=op.value`` query parameters as SQL conditions on typed values.

A value is converted by its field's text converter before it reaches SQL, so ``plays=gt.10``
compares integers and ``released=lt.2024-01-01`` dates; values are always bound parameters.
A field whose name is also a parameter of the row API (``count``, ``cursor``, ``owner``,
``filter``) is filtered as ``filter.<field>=op.value``, which works for every field. The same
filters can be sent as ``filter=field.op.value`` (repeatable): one declared parameter, which
is the form the OpenAPI document gives, so generated clients can filter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_, true
from sqlalchemy.sql.elements import ColumnClause

from tablehouse.core.database import Backend
from tablehouse.datasets.schemas import FieldSpec
from tablehouse.errors import InvalidInput, Location
from tablehouse.rows.convert.layout import Layout
from tablehouse.rows.convert.values import Converter, InvalidValue, converter
from tablehouse.rows.schemas import IS_VALUES, MAX_LIST_ITEMS, OPERATORS

RESERVED = ("order", "select", "limit", "cursor", "count", "owner")
FILTER = "filter"  # filter=field.op.value, any number of times
FILTER_PREFIX = "filter."
LIKE_ESCAPE = "\\"
Column = ColumnClause[Any]
Condition = ColumnElement[bool]

_COMPARISONS: dict[str, Callable[[Column, Any], Condition]] = {
    "eq": lambda column, value: column == value,
    "neq": lambda column, value: column != value,
    "lt": lambda column, value: column < value,
    "lte": lambda column, value: column <= value,
    "gt": lambda column, value: column > value,
    "gte": lambda column, value: column >= value,
}
_JSON_TYPE_OF = {Backend.POSTGRESQL: func.jsonb_typeof, Backend.SQLITE: func.json_type}


class FilterError(ValueError):
    def __init__(self, message: str, kind: str = "invalid_filter") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Filter:
    field: str
    text: str  # "op.value" as sent, for the cursor's fingerprint
    condition: Condition


def parse_filters(
    layout: Layout, params: Sequence[tuple[str, str]], *, backend: Backend
) -> list[Filter]:
    """Every filter in ``params`` (reserved names skipped), or InvalidInput naming each problem."""
    problems = _repeated(params)
    filters: list[Filter] = []
    for key, value in params:
        if key in RESERVED:
            continue
        if key == FILTER:
            name, dot, text = value.partition(".")
            if not dot:
                problems.append((("query", key), _no_field(layout), "malformed_filter"))
                continue
            if name not in layout.by_name:
                problems.append((("query", key), _not_a_field(name, layout), "unknown_field"))
                continue
        else:
            name, text = key.removeprefix(FILTER_PREFIX), value
        spec = layout.by_name.get(name)
        if spec is None:
            problems.append((("query", key), _unknown(key, layout), "unknown_parameter"))
            continue
        try:
            condition = _condition(spec, layout.table.c[name], text, backend)
        except FilterError as exc:
            problems.append((("query", key), f"{name}: {exc}", exc.kind))
            continue
        filters.append(Filter(field=name, text=text, condition=condition))
    if problems:
        raise InvalidInput.of(problems)
    return filters


def _repeated(params: Sequence[tuple[str, str]]) -> list[tuple[Location, str, str]]:
    """A parameter such as ``order`` given twice: which one was meant?"""
    counts = Counter(key for key, _ in params)
    return [
        (("query", name), f"'{name}' is given more than once", "repeated")
        for name in RESERVED
        if counts[name] > 1
    ]


def _unknown(key: str, layout: Layout) -> str:
    return (
        f"'{key}' is not a field of this dataset nor a parameter; fields: "
        f"{', '.join(layout.names)}; parameters: {', '.join((*RESERVED, FILTER))}"
    )


def _no_field(layout: Layout) -> str:
    return f"expected field.operator.value, such as {layout.names[-1]}.eq.x"


def _not_a_field(name: str, layout: Layout) -> str:
    return f"'{name}' is not a field of this dataset; fields: {', '.join(layout.names)}"


def _condition(spec: FieldSpec, column: Column, text: str, backend: Backend) -> Condition:
    op, dot, value = text.partition(".")
    if not dot:
        raise FilterError(
            f"expected operator.value, such as eq.{text or 'x'}; operators: {', '.join(OPERATORS)}",
            "malformed_filter",
        )
    if op not in OPERATORS:
        raise FilterError(
            f"unknown operator '{op}'; operators: {', '.join(OPERATORS)}", "unknown_operator"
        )
    if op == "is":
        return _is(spec, column, value, backend)
    if spec.type == "json":
        raise FilterError(
            "json fields can only be tested with is.null or is.not_null", "bad_operator"
        )
    if op in ("like", "ilike"):
        return _like(spec, column, op, value, backend)
    convert = _converter(spec)
    if op == "in":
        return column.in_([_convert(convert, item) for item in parse_list(value)])
    return _COMPARISONS[op](column, _convert(convert, value))


def _converter(spec: FieldSpec) -> Converter:
    # A bound is not a stored value: "lt.zzz" is fine even when longer than max_length.
    return converter(spec.model_copy(update={"max_length": None}), from_text=True)


def _convert(convert: Converter, value: str) -> Any:
    try:
        return convert(value)
    except InvalidValue as exc:
        raise FilterError(str(exc), "invalid_value") from None


def _is(spec: FieldSpec, column: Column, value: str, backend: Backend) -> Condition:
    if value in ("true", "false"):
        if spec.type != "boolean":
            raise FilterError(f"is.{value} applies to boolean fields only", "bad_operator")
        return column.is_(true() if value == "true" else false())
    if value == "null":
        return _is_null(spec, column, backend)
    if value == "not_null":
        return ~_is_null(spec, column, backend)
    raise FilterError(f"is takes one of {', '.join(IS_VALUES)}, not '{value}'", "invalid_value")


def _is_null(spec: FieldSpec, column: Column, backend: Backend) -> Condition:
    if spec.type != "json":
        return column.is_(None)
    # A JSON field may hold SQL NULL or the JSON value null; both read back as null.
    return or_(column.is_(None), _JSON_TYPE_OF[backend](column) == "null")


def _like(spec: FieldSpec, column: Column, op: str, value: str, backend: Backend) -> Condition:
    if spec.type != "string":
        raise FilterError(f"{op} applies to string fields only", "bad_operator")
    if "\x00" in value:
        raise FilterError("strings cannot contain the NUL character", "invalid_value")
    tokens = pattern_tokens(value)
    if op == "ilike":
        return column.ilike(like_pattern(tokens), escape=LIKE_ESCAPE)
    if backend == Backend.SQLITE:
        # SQLite's LIKE ignores the case of ASCII letters; GLOB is case-sensitive.
        return column.op("GLOB", is_comparison=True)(glob_pattern(tokens))
    return column.like(like_pattern(tokens), escape=LIKE_ESCAPE)


Token = str | None  # one literal character, or None for the wildcard


def pattern_tokens(value: str) -> list[Token]:
    """``*`` is the wildcard; a backslash makes the next character literal (``\\*``, ``\\\\``)."""
    tokens: list[Token] = []
    escaped = False
    for char in value:
        if escaped:
            tokens.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            tokens.append(None if char == "*" else char)
    if escaped:
        tokens.append("\\")
    return tokens


def like_pattern(tokens: Sequence[Token]) -> str:
    return "".join(
        "%" if t is None else (LIKE_ESCAPE + t if t in ("%", "_", LIKE_ESCAPE) else t)
        for t in tokens
    )


_GLOB_LITERALS = {"*": "[*]", "?": "[?]", "[": "[[]"}


def glob_pattern(tokens: Sequence[Token]) -> str:
    return "".join("*" if t is None else _GLOB_LITERALS.get(t, t) for t in tokens)


def parse_list(value: str) -> list[str]:
    """``(a,b,"c,d")``: items split on commas; an item that starts with a double quote runs
    to the closing quote, and inside it a backslash makes the next character literal."""
    if not (value.startswith("(") and value.endswith(")")):
        raise FilterError('write the list in parentheses: in.(a,b,"c,d")', "malformed_filter")
    body, items, position = value[1:-1], [], 0
    if not body:
        return []
    while True:
        if body.startswith('"', position):
            item, position = _quoted(body, position + 1)
        else:
            end = body.find(",", position)
            end = len(body) if end < 0 else end
            item, position = body[position:end], end
        items.append(item)
        if len(items) > MAX_LIST_ITEMS:
            raise FilterError(f"at most {MAX_LIST_ITEMS} items in a list", "too_many_items")
        if position == len(body):
            return items
        if body[position] != ",":
            raise FilterError("a quoted item must be followed by a comma", "malformed_filter")
        position += 1


def _quoted(body: str, position: int) -> tuple[str, int]:
    chars: list[str] = []
    while position < len(body):
        char = body[position]
        if char == '"':
            return "".join(chars), position + 1
        if char == "\\" and position + 1 < len(body):
            position += 1
            char = body[position]
        chars.append(char)
        position += 1
    raise FilterError("a quoted item has no closing double quote", "malformed_filter")


def all_of(filters: Sequence[Filter]) -> Condition:
    return and_(true(), *(f.condition for f in filters))
