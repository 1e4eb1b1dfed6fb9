"""What the analytics endpoints depend on: the store (from the runtime) and the window's
query parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from tablehouse.analytics import service
from tablehouse.api.dependencies import RuntimeDep
from tablehouse.api.params import IsoDateTime
from tablehouse.core.events import EventReader


async def get_store(runtime: RuntimeDep) -> EventReader:
    """The analytics store; 404 analytics_disabled when ANALYTICS_ENABLED=false."""
    return service.store_of(runtime.analytics)


Store = Annotated[EventReader, Depends(get_store)]

Since = Annotated[
    IsoDateTime | None,
    Query(alias="from", description="Start, inclusive (ISO 8601; naive is UTC)"),
]
Until = Annotated[
    IsoDateTime | None, Query(alias="to", description="End, exclusive (ISO 8601; default now)")
]
EveryUser = Annotated[
    bool, Query(alias="all_users", description="Every user's queries (administrators only)")
]
