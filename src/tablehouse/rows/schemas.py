"""Bodies for row ingest."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from tablehouse.core.quoting import clip

OnInvalid = Literal["error", "skip"]
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
