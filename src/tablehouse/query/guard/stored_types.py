"""Which columns of an answer carry a dataset's dates and date-times, on SQLite.

SQLite has no date-time type: a ``datetime`` field is stored as text, naive UTC in
SQLAlchemy's format (``2026-01-01 00:00:37.000000``), which a statement answers as it is,
where the rows API and PostgreSQL write ISO 8601 with the offset
(``2026-01-01T00:00:37+00:00``). Rather than store another format (every stored row would
need rewriting, and comparisons with the text users write, ``at >= '2026-01-01 10:00'``,
would change meaning), the answer is converted: sqlglot's type annotation, given the
datasets' fields, tells which output columns carry a field's value (directly, through a CTE,
a subquery or ``*``, or through ``max``, ``coalesce``, ``lag`` ...), and the SQLite backend
turns their stored text back into date-times, which every answer format writes as it writes
PostgreSQL's. A column whose type sqlglot cannot tell keeps the stored text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from tablehouse.core.database import Backend

# The kinds of field whose stored form differs from the rows API's (a date is stored as
# its ISO 8601 text already, but knowing it lets the answer call the column a date).
KINDS = {"datetime": exp.DType.DATETIME, "date": exp.DType.DATE}
# The other fields' types, so that sqlglot can resolve every column and expand stars.
_OTHER_TYPES = {
    "string": "TEXT",
    "integer": "BIGINT",
    "float": "DOUBLE",
    "boolean": "BOOLEAN",
    "json": "JSON",
    "uuid": "TEXT",
}
# What sqlglot calls the types of such values (SQLite's CURRENT_TIMESTAMP is UTC as well).
_KIND_OF = {
    exp.DType.DATETIME: "datetime",
    exp.DType.TIMESTAMP: "datetime",
    exp.DType.TIMESTAMPTZ: "datetime",
    exp.DType.DATE: "date",
}


@dataclass(frozen=True, slots=True)
class OutputTypes:
    """For each output column in order: its name as sqlglot sees it (lower case), and
    ``"datetime"``, ``"date"`` or None. The backend checks the names against the columns
    the database answers, and leaves any column that does not match alone."""

    names: tuple[str, ...]
    kinds: tuple[str | None, ...]

    def kinds_of(self, names: Sequence[str]) -> list[str | None]:
        if len(names) != len(self.names):
            return [None] * len(names)
        return [
            kind if kind is not None and name.lower() == expected else None
            for name, expected, kind in zip(names, self.names, self.kinds, strict=True)
        ]


def output_types(
    tree: exp.Expr, fields: Mapping[str, Sequence[tuple[str, str]]], backend: Backend
) -> OutputTypes | None:
    """The output types of ``tree`` (the analysed statement, naming datasets as written;
    ``fields`` by those names), or None when nothing needs converting: on PostgreSQL, which
    answers date-times itself, or when no dataset it reads has a date or a date-time."""
    if backend != Backend.SQLITE or not any(
        kind in KINDS for dataset in fields.values() for _, kind in dataset
    ):
        return None
    schema = MappingSchema(
        {
            name: {field: _sql_type(kind) for field, kind in dataset}
            for name, dataset in fields.items()
        },
        dialect="sqlite",
    )
    try:
        typed = annotate_types(
            qualify(
                tree.copy(),
                schema=schema,
                dialect="sqlite",
                validate_qualify_columns=False,
                quote_identifiers=False,
            ),
            schema=schema,
            dialect="sqlite",
        )
    except (SqlglotError, RecursionError, KeyError, ValueError):
        # sqlglot's optimizer may fail on a statement the database runs well: the answer
        # then keeps SQLite's stored text, as it did before.
        return None
    if not isinstance(typed, exp.Query):
        return None
    selects = typed.selects
    return OutputTypes(
        names=tuple(select.alias_or_name.lower() for select in selects),
        kinds=tuple(_kind(select) for select in selects),
    )


def _sql_type(kind: str) -> str:
    known = KINDS.get(kind)
    return known.value if known is not None else _OTHER_TYPES.get(kind, "TEXT")


def _kind(select: exp.Expr) -> str | None:
    kind = select.type.this if select.type is not None else None
    return _KIND_OF.get(kind) if isinstance(kind, exp.DType) else None
