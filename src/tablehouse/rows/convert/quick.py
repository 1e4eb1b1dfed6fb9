"""A row converter compiled for one CSV header, for the common case of a good row.

A CSV row is converted by one generated function with the cell indexes and converters
bound in, instead of a loop of small calls per cell: on a million rows that is the
difference between the target speed and half of it. The generated source holds only
indexes and names we make up (``f0``, ``k1``); no header or field name from a client is
ever part of it. When it raises, the careful converter finds and explains the problem.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tablehouse.core.database import Backend
from tablehouse.datasets.schemas import FieldSpec
from tablehouse.rows.convert.values import InvalidValue, fast_text_converter

RowConverter = Callable[[Sequence[str]], tuple[Any, ...]]


def _required() -> Any:
    raise InvalidValue("required")


def compile_text_row(
    fields: Sequence[FieldSpec],
    positions: Mapping[str, int],
    missing: Callable[[FieldSpec], Any],
    *,
    storing_in: Backend | None = None,
) -> RowConverter:
    namespace: dict[str, Any] = {"required": _required}
    parts: list[str] = []
    for n, spec in enumerate(fields):
        index = positions.get(spec.name)
        if index is None:
            try:
                namespace[f"k{n}"] = missing(spec)
            except InvalidValue:
                parts.append("required()")
            else:
                parts.append(f"k{n}")
            continue
        namespace[f"f{n}"] = fast_text_converter(spec, storing_in=storing_in)
        if spec.type == "string" and not spec.is_nullable:
            parts.append(f"f{n}(cells[{index}])")
        else:
            empty = "None" if spec.is_nullable else "required()"
            parts.append(f"(f{n}(c) if (c := cells[{index}]) != '' else {empty})")
    source = f"def convert(cells):\n    return ({', '.join(parts)},)\n"
    exec(compile(source, "<tablehouse row converter>", "exec"), namespace)
    converter: RowConverter = namespace["convert"]
    return converter
