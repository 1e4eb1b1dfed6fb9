"""Bodies of POST /query."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tablehouse.config import SQL_LENGTH_CEILING, Settings

# A parameter's value: JSON scalars only. Strings are converted to the type the statement
# expects where the database says (dates, times, UUIDs, numbers).
ParameterValue = str | int | float | bool | None


class QueryRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "sql": "SELECT city, count(*) AS n FROM orders "
                    "WHERE total > :min GROUP BY city",
                    "params": {"min": 100},
                    "limit": 100,
                }
            ]
        },
    )

    sql: str = Field(
        min_length=1,
        # QUERY_MAX_SQL_LENGTH is checked by the service and shown here in the OpenAPI
        # document (state_limits); this is only the ceiling it may be set to.
        max_length=SQL_LENGTH_CEILING,
        description="One read-only statement (SELECT, WITH, UNION/INTERSECT/EXCEPT) that names "
        "your datasets as you named them; parameters are written :name. At most "
        "QUERY_MAX_SQL_LENGTH characters and QUERY_MAX_SQL_TOKENS tokens",
    )
    params: dict[str, ParameterValue] = Field(
        default_factory=dict, description="A value for each :name parameter in the statement"
    )
    limit: int | None = Field(
        None, ge=1, description="Return at most this many rows (at most QUERY_MAX_ROWS)"
    )
    timeout_ms: int | None = Field(
        None, ge=1, description="Stop the statement after this long (at most QUERY_TIMEOUT_MS)"
    )


class QueryColumn(BaseModel):
    name: str
    type: str = Field(
        description="integer, float, number, string, boolean, datetime, date, time, json, uuid, "
        "bytes, null, or the database's own type name (see docs/api.md)"
    )


class QueryStats(BaseModel):
    execution_time_ms: float = Field(description="Time the database spent, as measured around it")
    rows_read: int = Field(
        description="PostgreSQL: rows the statement read from your tables; SQLite: rows returned"
    )
    bytes_read: int = Field(description="Size of the returned rows, encoded as JSON")


class QueryResult(BaseModel):
    query_id: uuid.UUID
    columns: list[QueryColumn]
    rows: list[list[Any]] = Field(description="One array per row, values in column order")
    row_count: int
    truncated: bool = Field(description="More rows existed than the limit (or the size limit)")
    stats: QueryStats


def state_limits(document: dict[str, Any], settings: Settings) -> None:
    """Put this server's QUERY_MAX_SQL_LENGTH, QUERY_MAX_ROWS and QUERY_TIMEOUT_MS into its
    OpenAPI document as the most ``sql``, ``limit`` and ``timeout_ms`` may be: the service
    refuses more (_check_limits), and the request model cannot know the settings."""
    properties = document["components"]["schemas"]["QueryRequest"]["properties"]
    properties["sql"]["maxLength"] = settings.query_max_sql_length
    for name, maximum in (
        ("limit", settings.query_max_rows),
        ("timeout_ms", settings.query_timeout_ms),
    ):
        properties[name]["anyOf"][0]["maximum"] = maximum
