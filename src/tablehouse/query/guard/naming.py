"""Result columns named as the database names them from the user's own text.

The database runs sqlglot's rendering of a statement, not its text. A database names an
output column without ``AS`` from that rendering: SQLite uses the expression's text
(``COUNT(*)`` where the user wrote ``count(*)``), PostgreSQL its function (``current_timestamp``
where the user wrote ``now()``). So :func:`name_columns` gives every such projection an
explicit alias: the name the database would have given the text the user wrote.

Plain column references (``amount``, ``t.amount``, ``(amount)``) and stars keep no alias: both
databases name them by the column, which the rendering does not change. An alias that merely
repeats a name has no other effect: PostgreSQL resolves ORDER BY and GROUP BY against output
names whether implicit or explicit, and SQLite's span names are texts no unquoted identifier
can equal.
"""

from __future__ import annotations

import re

from sqlglot import exp

from tablehouse.core.database import Backend
from tablehouse.query.guard.checks import ascii_lower
from tablehouse.query.guard.parsing import WRITTEN_SPAN

# PostgreSQL's name for a column it cannot name otherwise.
UNNAMED = "?column?"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")

_UNNAMED_CONSTANTS = (exp.Literal, exp.Null, exp.Boolean)

# PostgreSQL's grammar turns some SQL-standard forms into calls of functions of its own.
_TRIM = {"LEADING": "ltrim", "TRAILING": "rtrim"}

# The type names PostgreSQL gives a cast with nothing else to name it (``1::integer`` is
# ``int4``); sqlglot's type for the others is spelled as PostgreSQL spells it.
_PG_TYPE_NAMES: dict[exp.DType, str] = {
    exp.DType.TINYINT: "int2",
    exp.DType.SMALLINT: "int2",
    exp.DType.INT: "int4",
    exp.DType.BIGINT: "int8",
    exp.DType.FLOAT: "float4",
    exp.DType.DOUBLE: "float8",
    exp.DType.DECIMAL: "numeric",
    exp.DType.BOOLEAN: "bool",
    exp.DType.CHAR: "bpchar",
    exp.DType.VARCHAR: "varchar",
    exp.DType.TIMESTAMP: "timestamp",
    exp.DType.TIMESTAMPTZ: "timestamptz",
    exp.DType.TIME: "time",
    exp.DType.TIMETZ: "timetz",
    exp.DType.VARBINARY: "bytea",
}


def name_columns(tree: exp.Expr, sql: str, backend: Backend) -> int:
    """Aliases, in place, each projection of each SELECT in ``tree`` (parsed from ``sql``)
    that the database would name from its text, and says how many nodes that added. Inner
    SELECTs count too: ``*`` over a CTE or a subquery answers their names, and the user may
    refer to them by those names."""
    added = 0
    for select in list(tree.find_all(exp.Select)):
        for projection in list(select.expressions):
            if not _named_by_text(projection, backend):
                continue
            name = (
                _written(projection, sql)
                if backend == Backend.SQLITE
                else _pg_name(projection, sql)
            )
            if name is None or "\x00" in name:  # no driver takes a NUL in a statement
                continue
            alias = exp.Alias(alias=exp.Identifier(this=name, quoted=True))
            projection.replace(alias)  # in the projection's place, links kept right
            alias.set("this", projection)
            added += 2
    return added


def _named_by_text(projection: exp.Expr, backend: Backend) -> bool:
    if isinstance(projection, exp.Alias | exp.Star | exp.Placeholder):
        return False  # a parameter renders as itself ($1 is as unnamed as :p)
    if backend == Backend.POSTGRESQL and isinstance(projection, _UNNAMED_CONSTANTS):
        return False  # rendered as a constant again, which PostgreSQL leaves unnamed too
    inner = projection
    while isinstance(inner, exp.Paren):
        inner = inner.this
    return not isinstance(inner, exp.Column)


def _written(projection: exp.Expr, sql: str) -> str | None:
    """SQLite's name: the text from the expression's first token to the next token (or the
    end of the statement), trailing spaces left out; comments in it stay."""
    span = projection.meta_get(WRITTEN_SPAN)
    if not isinstance(span, tuple):
        return None
    start, end = span
    return sql[start:end].rstrip() or None


def _pg_name(node: exp.Expr, sql: str) -> str:
    return _figured(node, sql) or UNNAMED


def _figured(node: exp.Expr | None, sql: str) -> str | None:
    """PostgreSQL's FigureColnameInternal (src/backend/parser/parse_target.c) over sqlglot's
    tree, with function names read from the text as written (sqlglot may have replaced the
    function: ``now()`` by CURRENT_TIMESTAMP, ``strpos`` by POSITION)."""
    if node is None:
        return None
    if isinstance(node, exp.Paren | exp.Window | exp.Filter | exp.WithinGroup | exp.Collate):
        return _figured(node.this, sql)
    if isinstance(node, exp.Bracket):  # a subscript names nothing: the array does
        return _figured(node.this, sql)
    if isinstance(node, exp.Column):
        return None if isinstance(node.this, exp.Star) else _identifier(node.this)
    if isinstance(node, exp.Identifier):
        return _identifier(node)
    if isinstance(node, exp.Dot):  # (composite).field, schema.function(...)
        return _figured(node.expression, sql)
    if isinstance(node, exp.Cast):
        return _figured(node.this, sql) or _type_name(node.to)
    if isinstance(node, exp.Case):
        return _figured(node.args.get("default"), sql) or "case"
    if isinstance(node, exp.Interval):
        return "interval"
    if isinstance(node, exp.AtTimeZone):
        return "timezone"
    if isinstance(node, exp.Exists):
        return "exists"
    if isinstance(node, exp.Array):
        return "array"
    if isinstance(node, exp.Subquery):
        query = node.this
        if isinstance(query, exp.Select) and query.expressions:
            first = query.expressions[0]
            return first.alias if isinstance(first, exp.Alias) else _pg_name(first, sql)
        return None
    called = _called_name(node, sql)
    if isinstance(node, exp.Trim) and called == "trim":
        position = str(node.args.get("position") or "").upper()
        return _TRIM.get(position, "btrim")
    return called


def _called_name(node: exp.Expr, sql: str) -> str | None:
    """The function's name as the call wrote it, folded as PostgreSQL folds it; None for
    what is not a call (operators, literals), which PostgreSQL leaves unnamed."""
    start, end = node.meta_get("start"), node.meta_get("end")
    if not isinstance(start, int) or not isinstance(end, int):
        return None
    written = sql[start : end + 1]
    if written.startswith('"') and written.endswith('"') and len(written) > 1:
        return written[1:-1].replace('""', '"')
    if not _NAME.fullmatch(written):
        return None
    if isinstance(node, exp.Func) or sql[end + 1 :].lstrip().startswith("("):
        return ascii_lower(written)
    return None


def _identifier(node: exp.Expr) -> str:
    if isinstance(node, exp.Identifier) and node.quoted:
        return node.name
    return ascii_lower(node.name)


def _type_name(to: exp.Expr | None) -> str | None:
    if not isinstance(to, exp.DataType):
        return None
    kind = to.this
    if isinstance(kind, exp.DType):
        known = _PG_TYPE_NAMES.get(kind)
        if known is not None:
            return known
        return kind.value.lower()
    return ascii_lower(to.sql(dialect="postgres")).split("(")[0].split()[0] or None
