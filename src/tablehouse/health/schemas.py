from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class DatabaseState(BaseModel):
    status: Literal["ok", "unreachable"]
    backend: str
    version: str | None = None
    error: str | None = None
    pool: dict[str, int]


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    database: DatabaseState
