"""What the query routes need besides the caller and the session: the query target, made
once at start-up by the service's ``target_for``, the same function ``tablehouse query``
calls (:func:`standalone_target`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, cast
from weakref import WeakKeyDictionary

from fastapi import Depends, Request

from tablehouse.api.runtime import Runtime
from tablehouse.config import Settings
from tablehouse.core.database import (
    ReadSessionFactory,
    backend_of,
    create_read_engine,
    create_read_session_factory,
)
from tablehouse.core.events import EventSink
from tablehouse.core.limits import ConcurrencyLimit
from tablehouse.query import service
from tablehouse.query.events import QuerySource

# Each runtime's target, made once (at start-up, by create_app's lifespan): nothing in it
# depends on the request. Kept per runtime object, so a runtime made from another (with other
# settings or another event sink) gets its own.
_TARGETS: WeakKeyDictionary[Runtime, service.QueryTarget] = WeakKeyDictionary()


def target_of(runtime: Runtime) -> service.QueryTarget:
    target = _TARGETS.get(runtime)
    if target is None:
        target = _TARGETS[runtime] = service.target_for(
            runtime.settings,
            runtime.query_engine,
            runtime.backend,
            slots=runtime.query_slots,
            events=runtime.events,
            statements=runtime.query_statements,
            check_threads=runtime.query_check_threads,
        )
    return target


async def get_target(request: Request) -> service.QueryTarget:
    """The runtime's target, read straight from the app (a ``RuntimeDep`` would be one more
    dependency to resolve)."""
    return target_of(cast(Runtime, request.app.state.runtime))


QueryTargetDep = Annotated[service.QueryTarget, Depends(get_target)]


@asynccontextmanager
async def standalone_target(
    settings: Settings, events: EventSink, *, source: QuerySource = "cli"
) -> AsyncIterator[tuple[ReadSessionFactory, service.QueryTarget]]:
    """Read sessions and a query target for a process without a server's runtime, made as
    the server makes them: the reads engine, and a replica's for users' SQL when
    DATABASE_READ_URL is set; one query at a time. The engines close when the block ends."""
    reads = create_read_engine(settings)
    queries = create_read_engine(settings, replica=True) if settings.database_read_url else reads
    try:
        yield (
            create_read_session_factory(reads),
            service.target_for(
                settings,
                queries,
                backend_of(queries),
                slots=ConcurrencyLimit(1, what="queries", code="too_many_concurrent_queries"),
                events=events,
                statements=service.statement_cache(settings),
                check_threads=service.check_threads(),
                source=source,
            ),
        )
    finally:
        if queries is not reads:
            await queries.dispose()
        await reads.dispose()
