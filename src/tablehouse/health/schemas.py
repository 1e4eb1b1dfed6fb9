from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class DatabaseState(BaseModel):
    status: Literal["ok", "unreachable"]
    backend: str
    version: str | None = None
    error: str | None = None
    pool: dict[str, int]
    read_pool: dict[str, int] | None = Field(
        None, description="The pool for reads and SQL queries (on the primary)"
    )


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    database: DatabaseState
    replica: DatabaseState | None = Field(
        None, description="The read replica SQL queries run on, when DATABASE_READ_URL is set"
    )
