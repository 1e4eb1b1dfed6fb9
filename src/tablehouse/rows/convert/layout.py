"""A dataset's table and fields, prepared for fast row conversion once per version of the
dataset (and kept for the requests that follow)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Table

from tablehouse.core.database import Backend
from tablehouse.datasets import ddl
from tablehouse.datasets.models import Dataset
from tablehouse.datasets.schemas import FieldSpec
from tablehouse.errors import InvalidInput
from tablehouse.rows.convert.quick import compile_text_row
from tablehouse.rows.convert.values import Converter, InvalidValue, converter

# What a quick conversion may raise before the careful one explains the problem.
_QUICK_FAILURES = (InvalidValue, ValueError, TypeError, OverflowError, KeyError)

Problem = tuple[str | None, str]  # (field, message)
Problems = Sequence[Problem]
Record = tuple[Any, ...]  # one row's values in field order, ready to store
# Shared by every good row: one list per row would be a million objects for the collector.
NO_PROBLEMS: Problems = ()
# Layouts kept per process, keyed by a dataset's table and fields (see Layout.of).
CACHED_LAYOUTS = 512


@dataclass(frozen=True)
class Layout:
    fields: list[FieldSpec]
    table: Table
    # The backend (dialect name) converted values are stored in; None: only compared.
    storing_in: Backend | None = None
    names: list[str] = field(init=False)
    by_name: dict[str, FieldSpec] = field(init=False)
    key: list[str] = field(init=False)
    json_converters: list[Converter] = field(init=False)
    text_converters: list[Converter] = field(init=False)
    _json_plan: list[tuple[str, bool, Converter]] = field(init=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: computed once here
        set_(self, "names", [f.name for f in self.fields])
        set_(self, "by_name", {f.name: f for f in self.fields})
        set_(self, "key", [f.name for f in self.fields if f.primary_key])
        storing_in = self.storing_in
        set_(self, "json_converters", [converter(f, storing_in=storing_in) for f in self.fields])
        set_(
            self,
            "text_converters",
            [converter(f, from_text=True, storing_in=storing_in) for f in self.fields],
        )
        set_(
            self,
            "_json_plan",
            [
                (f.name, f.is_nullable, c)
                for f, c in zip(self.fields, self.json_converters, strict=True)
            ],
        )

    @classmethod
    def of(cls, schema: Dataset, *, storing_in: Backend | None = None) -> Layout:
        """The layout of ``schema`` as it is now. Shared by every request that sees the same
        table and fields (a layout is never changed once made): building one means
        validating every field, compiling converters and a table, so it is done once per
        version of a dataset rather than once per request. Keyed by the fields themselves,
        not the version number, so a version seen inside a transaction that was then rolled
        back can never stand in for another with the same number.

        ``storing_in``: the backend (dialect name) the converted values are written to;
        leave it out for values that are only compared (filters, keys, cursors)."""
        return _layout(schema.table_name, orjson.dumps(schema.fields), storing_in)

    def missing(self, spec: FieldSpec) -> Any:
        """The value of a field the client left out: its default, null, or an error."""
        if spec.default is not None:
            return spec.default
        if spec.is_nullable:
            return None
        raise InvalidValue("required")

    def from_mapping(self, raw: Any) -> tuple[tuple[Any, ...] | None, Problems]:
        """A JSON object as a record in field order, or the problems with it."""
        if isinstance(raw, dict) and raw.keys() == self.by_name.keys():
            try:  # every field given: the common case, converted without bookkeeping
                return tuple(
                    [
                        None if (value := raw[name]) is None and nullable else convert(value)
                        for name, nullable, convert in self._json_plan
                    ]
                ), NO_PROBLEMS
            except _QUICK_FAILURES:
                pass
        return self._from_mapping_carefully(raw)

    def _from_mapping_carefully(self, raw: Any) -> tuple[tuple[Any, ...] | None, Problems]:
        if not isinstance(raw, Mapping):
            return None, [(None, "expected a JSON object")]
        problems: list[Problem] = [
            (str(name), "unknown field") for name in raw if name not in self.by_name
        ]
        values: list[Any] = []
        for spec, convert in zip(self.fields, self.json_converters, strict=True):
            try:
                if spec.name not in raw:
                    values.append(self.missing(spec))
                elif (value := raw[spec.name]) is None:
                    self.allow_null(spec)
                    values.append(None)
                else:
                    values.append(convert(value))
            except InvalidValue as exc:
                problems.append((spec.name, str(exc)))
        return (None, problems) if problems else (tuple(values), NO_PROBLEMS)

    def allow_null(self, spec: FieldSpec) -> None:
        if not spec.is_nullable:
            raise InvalidValue("may not be null")

    def text_reader(self, header: Sequence[str]) -> TextRecords:
        """Converts the records under ``header``; 422 when it names an unknown field or
        one field twice (which of the two cells would be meant?)."""
        return TextRecords(self, header)


class TextRecords:
    """Converts CSV records whose header is known; an empty cell is null for nullable fields."""

    def __init__(self, layout: Layout, header: Sequence[str]) -> None:
        self.layout = layout
        names = [name.strip() for name in header]
        _check_header(layout, names)
        position = {name: index for index, name in enumerate(names)}
        self.plan = [
            (spec, convert, position.get(spec.name))
            for spec, convert in zip(layout.fields, layout.text_converters, strict=True)
        ]
        self.width = len(names)
        self.quick = compile_text_row(
            layout.fields, position, layout.missing, storing_in=layout.storing_in
        )

    def convert(self, cells: Sequence[str]) -> tuple[tuple[Any, ...] | None, Problems]:
        if len(cells) == self.width:
            try:
                return self.quick(cells), NO_PROBLEMS
            except _QUICK_FAILURES:
                pass
        return self._convert_carefully(cells)

    def _convert_carefully(self, cells: Sequence[str]) -> tuple[tuple[Any, ...] | None, Problems]:
        if len(cells) != self.width:
            return None, [(None, f"expected {self.width} cells, found {len(cells)}")]
        values: list[Any] = []
        problems: list[Problem] = []
        for spec, convert, index in self.plan:
            try:
                if index is None:
                    values.append(self.layout.missing(spec))
                elif (cell := cells[index]) == "" and (spec.is_nullable or spec.type != "string"):
                    self.layout.allow_null(spec)
                    values.append(None)
                else:
                    values.append(convert(cell))
            except InvalidValue as exc:
                problems.append((spec.name, str(exc)))
        return (None, problems) if problems else (tuple(values), NO_PROBLEMS)


def _check_header(layout: Layout, names: Sequence[str]) -> None:
    unknown = [name for name in names if name not in layout.by_name]
    if unknown:
        raise InvalidInput(
            f"unknown fields in the header: {', '.join(unknown)}; "
            f"the dataset has {', '.join(layout.names)}",
            loc=("body", "header"),
            code="unknown_field",
        )
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise InvalidInput(
            f"the header names {', '.join(map(repr, repeated))} more than once; "
            "name each field at most once",
            loc=("body", "header"),
            code="repeated_field",
        )


@lru_cache(maxsize=CACHED_LAYOUTS)
def _layout(table_name: str, fields_json: bytes, storing_in: Backend | None) -> Layout:
    fields = [FieldSpec.model_validate(f) for f in orjson.loads(fields_json)]
    return Layout(fields=fields, table=ddl.table(table_name, fields), storing_in=storing_in)
