"""What the rows endpoints take and give: ingest options and reports, listing requests and pages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

from tablehouse.core.quoting import clip
from tablehouse.datasets.names import NAME

OnInvalid = Literal["error", "skip"]
OnConflict = Literal["error", "skip", "update"]
CountMode = Literal["exact", "estimated"]
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

# The listing's query syntax, for the OpenAPI document and the parsers (rows.filtering): a
# field name, then an operator and a value of the shape the operator needs. Whether the field
# exists, and whether the operator and value suit its type, the dataset decides.
COMPARISONS = ("eq", "neq", "lt", "lte", "gt", "gte")
OPERATORS = (*COMPARISONS, "like", "ilike", "in", "is")
IS_VALUES = ("null", "not_null", "true", "false")
MAX_LIST_ITEMS = 1000
_LIST_ITEM = r'(?:"(?:\\[\s\S]|[^"\\])*"|[^,"][^,]*|)'
_LIST = rf"\((?:{_LIST_ITEM}(?:,{_LIST_ITEM}){{0,{MAX_LIST_ITEMS - 1}}})?\)"
_OPERATION = (
    rf"(?:(?:{'|'.join((*COMPARISONS, 'like', 'ilike'))})\.[\s\S]*"
    rf"|in\.{_LIST}|is\.(?:{'|'.join(IS_VALUES)}))"
)
FILTER_PATTERN = rf"^{NAME}\.{_OPERATION}$"
DIRECTIONS = ("asc", "desc")
_ORDER_ITEM = rf"{NAME}(\.({'|'.join(DIRECTIONS)}))?"
ORDER_PATTERN = rf"^{_ORDER_ITEM}(,{_ORDER_ITEM})*$"
SELECT_PATTERN = rf"^{NAME}(,{NAME})*$"

# A problem quotes the body (an unknown field's name, a bad value): cut short, as in errors.
Quoted = Annotated[str, AfterValidator(clip)]


class RowProblem(BaseModel):
    row: int | None = Field(description="0-based row index in the body; null for the body")
    field: Quoted | None
    message: Quoted


class IngestReport(BaseModel):
    inserted: int = Field(description="Rows written (inserted, or updated with on_conflict=update)")
    received: int = Field(description="Rows in the body")
    skipped: int = Field(
        0, description="Rows left out because their key existed (on_conflict=skip)"
    )
    rejected: list[RowProblem] | None = Field(
        None, description="With on_invalid=skip: the rows left out and why (first ones only)"
    )
    rejected_count: int = 0


@dataclass(frozen=True, slots=True)
class IngestOptions:
    on_conflict: OnConflict = "error"
    on_invalid: OnInvalid = "error"
    batch_rows: int = 5000
    max_reported: int = 100
    # The format the path names (rows.csv, rows.ndjson), whatever the Content-Type says.
    form: str | None = None


@dataclass(frozen=True)
class ReadRequest:
    params: Sequence[tuple[str, str]]  # every query parameter; those not reserved are filters
    order: str | None = None
    select: str | None = None
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    count: CountMode | None = None


class RowPage(BaseModel):
    rows: list[dict[str, Any]]
    next: str | None = Field(
        description="Pass as ?cursor= with the same filters and order for the next page; "
        "null on the last page"
    )
    count: int | None = Field(
        None, description="With ?count=: the rows that match the filters (all pages)"
    )
